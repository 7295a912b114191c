// The fused Adam/AdamW step: same arithmetic, same order as the CPU kernel.
// Port of shaders/adam.wgsl. Inputs g; outputs p, m, v (updated in place).
// P: n, g offset, beta1, beta2, 1 − beta1, 1 − beta2, weight decay, 1 − lr·wd,
//    1/sqrt(bc2), eps, lr/bc1, mode (0 none, 1 L2, 2 decoupled)
#include "common.cuh"

KILN_KERNEL(adam_update_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    float* p = arg_buf<float>(a, 1);
    float* m = arg_buf<float>(a, 2);
    float* v = arg_buf<float>(a, 3);
    float gi = arg_buf<const float>(a, 0)[P[1] + i];
    if (P[11] == 1) gi += p[i] * pf(a, 6);
    else if (P[11] == 2) p[i] *= pf(a, 7);
    // Moments below the smallest normal float are stored as 0, as on the CPU.
    float mi = m[i] * pf(a, 2) + gi * pf(a, 4);
    float vi = v[i] * pf(a, 3) + gi * gi * pf(a, 5);
    m[i] = fabsf(mi) < 1.17549435e-38f ? 0.0f : mi;
    v[i] = (vi < 1.17549435e-38f && pf(a, 9) > 0.0f) ? 0.0f : vi;  // eps = 0: v kept
    float denom = sqrtf(v[i]) * pf(a, 8) + pf(a, 9);
    p[i] -= m[i] / denom * pf(a, 10);
}
