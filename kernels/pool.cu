// avg_pool2d forward and adjoint (a gather: no atomics), max_pool2d's
// argmax. Port of shaders/pool.wgsl (same arguments).
// P: planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, count_include_pad, x offset
#include "common.cuh"

struct Span {
    int lo, hi, padded;
};

// Clipped window [lo, hi) of output o along one axis, and its padded extent.
__device__ __forceinline__ Span span(unsigned o, unsigned s, unsigned p, unsigned k, unsigned len) {
    int start = (int)(o * s) - (int)p;
    int end_padded = min(start + (int)k, (int)(len + p));
    return Span{max(start, 0), min(end_padded, (int)len), end_padded - start};
}

__device__ __forceinline__ float divisor(const unsigned* P, Span ry, Span rx) {
    if (P[13] == 1) return (float)(ry.padded * rx.padded);
    return (float)((ry.hi - ry.lo) * (rx.hi - rx.lo));
}

KILN_KERNEL(avg_pool2d_fwd_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, ohw = P[3] * P[4];
    if (i >= P[0] * ohw) return;
    unsigned plane = i / ohw, oy = (i % ohw) / P[4], ox = i % P[4];
    Span ry = span(oy, P[7], P[9], P[5], P[1]), rx = span(ox, P[8], P[10], P[6], P[2]);
    float s = 0.0f;
    for (int iy = ry.lo; iy < ry.hi; ++iy)
        for (int ix = rx.lo; ix < rx.hi; ++ix) s += x[P[14] + (plane * P[1] + (unsigned)iy) * P[2] + (unsigned)ix];
    arg_buf<float>(a, 1)[i] = s / divisor(P, ry, rx);
}

// dx[iy, ix] = Σ over the windows that cover it of dy / divisor.
KILN_KERNEL(avg_pool2d_bwd_f32) {
    const unsigned* P = a.p;
    const float* dy = arg_buf<const float>(a, 0);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, hw = P[1] * P[2];
    if (i >= P[0] * hw) return;
    unsigned plane = i / hw;
    int iy = (int)((i % hw) / P[2]), ix = (int)(i % P[2]);
    int oy0 = max(iy + (int)P[9] - (int)P[5] + (int)P[7], 0) / (int)P[7];
    int ox0 = max(ix + (int)P[10] - (int)P[6] + (int)P[8], 0) / (int)P[8];
    int oy1 = min((iy + (int)P[9]) / (int)P[7], (int)P[3] - 1);
    int ox1 = min((ix + (int)P[10]) / (int)P[8], (int)P[4] - 1);
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy) {
        Span ry = span((unsigned)oy, P[7], P[9], P[5], P[1]);
        if (iy < ry.lo || iy >= ry.hi) continue;
        for (int ox = ox0; ox <= ox1; ++ox) {
            Span rx = span((unsigned)ox, P[8], P[10], P[6], P[2]);
            if (ix < rx.lo || ix >= rx.hi) continue;
            s += dy[P[14] + (plane * P[3] + (unsigned)oy) * P[4] + (unsigned)ox] / divisor(P, ry, rx);
        }
    }
    arg_buf<float>(a, 1)[i] = s;
}

// Index of each window's maximum within its plane; first wins, NaN wins.
KILN_KERNEL(max_pool2d_indices_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, ohw = P[3] * P[4];
    if (i >= P[0] * ohw) return;
    unsigned plane = i / ohw, oy = (i % ohw) / P[4], ox = i % P[4];
    float best = 0.0f;
    unsigned at = 0;
    bool have = false;
    for (unsigned ky = 0; ky < P[5]; ++ky) {
        int iy = (int)(oy * P[7] + ky * P[11]) - (int)P[9];
        if (iy < 0 || iy >= (int)P[1]) continue;
        for (unsigned kx = 0; kx < P[6]; ++kx) {
            int ix = (int)(ox * P[8] + kx * P[12]) - (int)P[10];
            if (ix < 0 || ix >= (int)P[2]) continue;
            unsigned pos = (unsigned)iy * P[2] + (unsigned)ix;
            float v = x[P[14] + plane * P[1] * P[2] + pos];
            if (!have || (!is_nan(best) && (v > best || is_nan(v)))) {
                best = v;
                at = pos;
                have = true;
            }
        }
    }
    long long* idx = arg_buf<long long>(a, 2);
    idx[i] = at;
}
