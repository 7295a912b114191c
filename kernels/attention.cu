// Fused scaled-dot-product attention, f32, head sizes up to 128. Port of
// shaders/attention.wgsl (same arguments): forward with an online softmax
// over key tiles in shared memory (no L×S matrix); backward recomputes the
// probabilities from the saved log-sum-exp, dQ over key tiles and dK/dV over
// query tiles. Buffers: q, k, v, mask, dout, stats; outputs out0, out1.
// P: B, L, S, E, Ev, scale, causal, has mask, mask rank, mask shape[8],
//    mask strides[8], mask offset, q off, k off, v off, dout off, o off, lse off, want dS
#include "common.cuh"

#define RW 64u  // query (or key) rows per block
#define KT 16u  // rows per staged tile

// Scaled score of (batch b, query i, key j) given q·k; −inf where masked out.
__device__ __forceinline__ float score(const KernelArgs& a, unsigned b, unsigned i, unsigned j, float qk) {
    const unsigned* P = a.p;
    if (P[6] == 1 && j > i) return -f32_inf();
    float s = qk * pf(a, 5);
    if (P[7] == 1) s += arg_buf<const float>(a, 3)[P[25] + strided_at(P, (b * P[1] + i) * P[2] + j, P[8], 9, 17)];
    return s;
}

KILN_KERNEL(attention_fwd_f32) {
    const unsigned* P = a.p;
    const float* q = arg_buf<const float>(a, 0);
    const float* k = arg_buf<const float>(a, 1);
    const float* v = arg_buf<const float>(a, 2);
    __shared__ float Ks[KT * 128];
    __shared__ float Vs[KT * 128];
    unsigned L = P[1], S = P[2], E = P[3], Ev = P[4];
    unsigned blocks = (L + RW - 1) / RW, flat = block_flat(), b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) return;
    unsigned i = (flat % blocks) * RW + threadIdx.x;
    bool live = i < L;
    float qv[128], acc[128] = {}, sc[KT];
    if (live)
        for (unsigned e = 0; e < E; ++e) qv[e] = q[P[26] + (b * L + i) * E + e];
    float m = -f32_inf(), l = 0.0f;
    for (unsigned j0 = 0; j0 < S; j0 += KT) {
        unsigned nj = min(KT, S - j0);
        __syncthreads();
        for (unsigned t = threadIdx.x; t < nj * E; t += RW) Ks[t] = k[P[27] + (b * S + j0) * E + t];
        for (unsigned t = threadIdx.x; t < nj * Ev; t += RW) Vs[t] = v[P[28] + (b * S + j0) * Ev + t];
        __syncthreads();
        if (!live) continue;
        float tmax = -f32_inf();
        for (unsigned jj = 0; jj < nj; ++jj) {
            float d = 0.0f;
            for (unsigned e = 0; e < E; ++e) d = fmaf(qv[e], Ks[jj * E + e], d);
            sc[jj] = score(a, b, i, j0 + jj, d);
            tmax = fmaxf(tmax, sc[jj]);
        }
        if (tmax == -f32_inf()) continue;
        float new_m = fmaxf(m, tmax);
        float corr = m == -f32_inf() ? 0.0f : expf(m - new_m);
        l *= corr;
        for (unsigned e = 0; e < Ev; ++e) acc[e] *= corr;
        for (unsigned jj = 0; jj < nj; ++jj) {
            float p = sc[jj] == -f32_inf() ? 0.0f : expf(sc[jj] - new_m);
            l += p;
            for (unsigned e = 0; e < Ev; ++e) acc[e] = fmaf(p, Vs[jj * Ev + e], acc[e]);
        }
        m = new_m;
    }
    if (live) {
        // A fully masked row attends to nothing: output 0 as PyTorch (2.5+),
        // and lse = +inf so that the backward's P = exp(s − lse) is 0.
        bool dead = l == 0.0f;
        float inv = dead ? 0.0f : 1.0f / l;
        float* out = arg_buf<float>(a, 6);
        for (unsigned e = 0; e < Ev; ++e) out[(b * L + i) * Ev + e] = acc[e] * inv;
        arg_buf<float>(a, 7)[b * L + i] = dead ? f32_inf() : m + logf(l);
    }
}

// out0 = [lse | D] (2·B·L), D_r = dO_r · O_r. Here `k` holds O and `q` the lse.
KILN_KERNEL(attention_bwd_d_f32) {
    const unsigned* P = a.p;
    unsigned r = block_flat() * blockDim.x + threadIdx.x, rows = P[0] * P[1], Ev = P[4];
    if (r >= rows) return;
    const float* dout = arg_buf<const float>(a, 4);
    const float* o = arg_buf<const float>(a, 1);
    float d = 0.0f;
    for (unsigned e = 0; e < Ev; ++e) d = fmaf(dout[P[29] + r * Ev + e], o[P[30] + r * Ev + e], d);
    float* out = arg_buf<float>(a, 6);
    out[r] = arg_buf<const float>(a, 0)[P[31] + r];
    out[rows + r] = d;
}

// out0 = dQ (B, L, E); out1 = dS (B, L, S) when P[32] = 1.
KILN_KERNEL(attention_bwd_dq_f32) {
    const unsigned* P = a.p;
    const float* q = arg_buf<const float>(a, 0);
    const float* k = arg_buf<const float>(a, 1);
    const float* v = arg_buf<const float>(a, 2);
    const float* dout = arg_buf<const float>(a, 4);
    const float* stats = arg_buf<const float>(a, 5);
    __shared__ float Ks[KT * 128];
    __shared__ float Vs[KT * 128];
    unsigned L = P[1], S = P[2], E = P[3], Ev = P[4];
    unsigned blocks = (L + RW - 1) / RW, flat = block_flat(), b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) return;
    unsigned i = (flat % blocks) * RW + threadIdx.x, r = b * L + i;
    bool live = i < L;
    float qv[128], dov[128], acc[128] = {}, lse = 0.0f, dsum = 0.0f;
    if (live) {
        for (unsigned e = 0; e < E; ++e) qv[e] = q[P[26] + r * E + e];
        for (unsigned e = 0; e < Ev; ++e) dov[e] = dout[P[29] + r * Ev + e];
        lse = stats[r];
        dsum = stats[P[0] * L + r];
    }
    for (unsigned j0 = 0; j0 < S; j0 += KT) {
        unsigned nj = min(KT, S - j0);
        __syncthreads();
        for (unsigned t = threadIdx.x; t < nj * E; t += RW) Ks[t] = k[P[27] + (b * S + j0) * E + t];
        for (unsigned t = threadIdx.x; t < nj * Ev; t += RW) Vs[t] = v[P[28] + (b * S + j0) * Ev + t];
        __syncthreads();
        if (!live) continue;
        for (unsigned jj = 0; jj < nj; ++jj) {
            float qk = 0.0f;
            for (unsigned e = 0; e < E; ++e) qk = fmaf(qv[e], Ks[jj * E + e], qk);
            float s = score(a, b, i, j0 + jj, qk), ds = 0.0f;
            if (s != -f32_inf()) {
                float dp = 0.0f;
                for (unsigned e = 0; e < Ev; ++e) dp = fmaf(dov[e], Vs[jj * Ev + e], dp);
                ds = expf(s - lse) * (dp - dsum);
            }
            if (P[32] == 1) arg_buf<float>(a, 7)[r * S + j0 + jj] = ds;
            for (unsigned e = 0; e < E; ++e) acc[e] = fmaf(ds, Ks[jj * E + e], acc[e]);
        }
    }
    if (live) {
        float* dq = arg_buf<float>(a, 6);
        for (unsigned e = 0; e < E; ++e) dq[r * E + e] = acc[e] * pf(a, 5);
    }
}

// out0 = dK (B, S, E), out1 = dV (B, S, Ev): a thread per key row; query
// rows, their dO, lse and D staged in tiles.
KILN_KERNEL(attention_bwd_dkv_f32) {
    const unsigned* P = a.p;
    const float* q = arg_buf<const float>(a, 0);
    const float* k = arg_buf<const float>(a, 1);
    const float* v = arg_buf<const float>(a, 2);
    const float* dout = arg_buf<const float>(a, 4);
    const float* stats = arg_buf<const float>(a, 5);
    __shared__ float Qs[KT * 128];
    __shared__ float Ds[KT * 128];
    __shared__ float tile_lse[KT];
    __shared__ float tile_d[KT];
    unsigned L = P[1], S = P[2], E = P[3], Ev = P[4];
    unsigned blocks = (S + RW - 1) / RW, flat = block_flat(), b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) return;
    unsigned j = (flat % blocks) * RW + threadIdx.x, c = b * S + j;
    bool live = j < S;
    float kv[128], vv[128], dk[128] = {}, dv[128] = {};
    if (live) {
        for (unsigned e = 0; e < E; ++e) kv[e] = k[P[27] + c * E + e];
        for (unsigned e = 0; e < Ev; ++e) vv[e] = v[P[28] + c * Ev + e];
    }
    for (unsigned i0 = 0; i0 < L; i0 += KT) {
        unsigned ni = min(KT, L - i0);
        __syncthreads();
        for (unsigned t = threadIdx.x; t < ni * E; t += RW) Qs[t] = q[P[26] + (b * L + i0) * E + t];
        for (unsigned t = threadIdx.x; t < ni * Ev; t += RW) Ds[t] = dout[P[29] + (b * L + i0) * Ev + t];
        if (threadIdx.x < ni) {
            tile_lse[threadIdx.x] = stats[b * L + i0 + threadIdx.x];
            tile_d[threadIdx.x] = stats[P[0] * L + b * L + i0 + threadIdx.x];
        }
        __syncthreads();
        if (!live) continue;
        for (unsigned ii = 0; ii < ni; ++ii) {
            float qk = 0.0f;
            for (unsigned e = 0; e < E; ++e) qk = fmaf(Qs[ii * E + e], kv[e], qk);
            float s = score(a, b, i0 + ii, j, qk);
            if (s == -f32_inf()) continue;
            float p = expf(s - tile_lse[ii]), dp = 0.0f;
            for (unsigned e = 0; e < Ev; ++e) {
                dp = fmaf(Ds[ii * Ev + e], vv[e], dp);
                dv[e] = fmaf(p, Ds[ii * Ev + e], dv[e]);
            }
            float ds = p * (dp - tile_d[ii]);
            for (unsigned e = 0; e < E; ++e) dk[e] = fmaf(ds, Qs[ii * E + e], dk[e]);
        }
    }
    if (live) {
        for (unsigned e = 0; e < E; ++e) arg_buf<float>(a, 6)[c * E + e] = dk[e] * pf(a, 5);
        for (unsigned e = 0; e < Ev; ++e) arg_buf<float>(a, 7)[c * Ev + e] = dv[e];
    }
}
