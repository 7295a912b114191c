// batch_norm over dense (N, C, M): per-channel statistics and backward sums
// with one block per channel (warp-shuffle block reductions), elementwise
// apply and dx. Port of shaders/batch_norm.wgsl (same arguments).
#include "common.cuh"

// Mean and biased variance from sums of d = x − K and d² with K the
// channel's first value (the shift keeps E[d²] − E[d]² from cancelling).
// P: n, c, m, x offset. Out: [mean (C) | var (C)].
KILN_KERNEL(batch_norm_stats_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    float* out = arg_buf<float>(a, 5);
    __shared__ float scratch[32];
    unsigned ch = block_flat(), n = P[0], c = P[1], m = P[2];
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (ch >= c) return;
    float shift = x[P[3] + ch * m];
    float s1 = 0.0f, s2 = 0.0f;
    for (unsigned e = threadIdx.x; e < n * m; e += blockDim.x) {
        float d = x[P[3] + ((e / m) * c + ch) * m + e % m] - shift;
        s1 += d;
        s2 += d * d;
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (threadIdx.x == 0) {
        float cnt = (float)(n * m), md = s1 / cnt;
        out[ch] = shift + md;
        out[c + ch] = fmaxf(s2 / cnt - md * md, 0.0f);
    }
}

// y = (x − mean)·invstd·w + b. Inputs x, mean, invstd, w, b.
// P: n, c, m, x offset, has w, has b
KILN_KERNEL(batch_norm_apply_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x, m = P[2];
    if (i >= P[0] * P[1] * m) return;
    unsigned ch = (i / m) % P[1];
    float k = arg_buf<const float>(a, 2)[ch];
    if (P[4] == 1) k *= arg_buf<const float>(a, 3)[ch];
    float y = (arg_buf<const float>(a, 0)[P[3] + i] - arg_buf<const float>(a, 1)[ch]) * k;
    if (P[5] == 1) y += arg_buf<const float>(a, 4)[ch];
    arg_buf<float>(a, 5)[i] = y;
}

// Per channel: dw = Σdy·x̂, db = Σdy and the dx coefficients. Inputs x, dy,
// mean, invstd, w. P: n, c, m, x offset, dy offset, has w.
// Out: [dw | db | k | db/cnt | dw/cnt] (5C).
KILN_KERNEL(batch_norm_bwd_sums_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    const float* dy = arg_buf<const float>(a, 1);
    const float* invstd = arg_buf<const float>(a, 3);
    float* out = arg_buf<float>(a, 5);
    __shared__ float scratch[32];
    unsigned ch = block_flat(), n = P[0], c = P[1], m = P[2];
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (ch >= c) return;
    float mean = arg_buf<const float>(a, 2)[ch];
    float s1 = 0.0f, s2 = 0.0f;
    for (unsigned e = threadIdx.x; e < n * m; e += blockDim.x) {
        unsigned j = ((e / m) * c + ch) * m + e % m;
        float d = dy[P[4] + j];
        s1 += d;
        s2 += d * (x[P[3] + j] - mean);
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (threadIdx.x == 0) {
        float cnt = (float)(n * m), dw = s2 * invstd[ch], db = s1;
        out[ch] = dw;
        out[c + ch] = db;
        out[2 * c + ch] = invstd[ch] * (P[5] == 1 ? arg_buf<const float>(a, 4)[ch] : 1.0f);
        out[3 * c + ch] = db / cnt;
        out[4 * c + ch] = dw / cnt;
    }
}

// dx = k·(dy − db/cnt − x̂·dw/cnt). Inputs x, dy, mean, invstd, the 5C coefficients.
// P: n, c, m, x offset, dy offset
KILN_KERNEL(batch_norm_bwd_dx_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x, c = P[1], m = P[2];
    if (i >= P[0] * c * m) return;
    unsigned ch = (i / m) % c;
    const float* coef = arg_buf<const float>(a, 4);
    float xhat = (arg_buf<const float>(a, 0)[P[3] + i] - arg_buf<const float>(a, 2)[ch]) * arg_buf<const float>(a, 3)[ch];
    float d = arg_buf<const float>(a, 1)[P[4] + i];
    arg_buf<float>(a, 5)[i] = coef[2 * c + ch] * (d - coef[3 * c + ch] - xhat * coef[4 * c + ch]);
}
