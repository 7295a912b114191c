// softmax / log_softmax over dense rows: one block per row, three sweeps
// (max, sum of exp, write) with warp-shuffle block reductions.
// Port of shaders/softmax.wgsl (same arguments).
#include "common.cuh"

// P: rows, len, log (0/1), x offset
KILN_KERNEL(softmax_fwd_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    float* y = arg_buf<float>(a, 1);
    __shared__ float scratch[32];
    unsigned row = block_flat(), len = P[1];
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (row >= P[0]) return;
    unsigned base = row * len, xb = P[3] + base;
    float m = -f32_inf();
    for (unsigned k = threadIdx.x; k < len; k += blockDim.x) m = fmaxf(m, x[xb + k]);
    m = block_max(m, scratch);
    if (m == -f32_inf()) m = 0.0f;  // a row of -inf gives NaN, as PyTorch does
    float s = 0.0f;
    for (unsigned k = threadIdx.x; k < len; k += blockDim.x) s += expf(x[xb + k] - m);
    s = block_sum(s, scratch);
    if (P[2] == 1) {
        float lse = m + logf(s);
        for (unsigned k = threadIdx.x; k < len; k += blockDim.x) y[base + k] = x[xb + k] - lse;
    } else {
        float inv = 1.0f / s;
        for (unsigned k = threadIdx.x; k < len; k += blockDim.x) y[base + k] = expf(x[xb + k] - m) * inv;
    }
}
