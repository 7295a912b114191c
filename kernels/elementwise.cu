// Unary and broadcasting binary ops over strided views; output dense.
// Port of shaders/elementwise.wgsl (same op codes and argument layout).
#include "common.cuh"

// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as in the WGSL shader.
__device__ __forceinline__ float erf_approx(float x) {
    float t = 1.0f / (1.0f + 0.3275911f * fabsf(x));
    float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) *
                         t * expf(-x * x);
    return x < 0.0f ? -y : (x > 0.0f ? y : 0.0f);
}

__device__ __forceinline__ float sigmoid_f(float x) {
    float e = expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

__device__ __forceinline__ float pow_f(float x, float p) {
    if (p == 0.0f) return 1.0f;
    if (x == 0.0f) return p < 0.0f ? f32_inf() : 0.0f;
    if (x > 0.0f) return exp2f(p * log2f(x));
    if (floorf(p) != p) return f32_nan();
    float m = exp2f(p * log2f(-x));
    return fabsf(fmodf(p, 2.0f)) == 1.0f ? -m : m;
}

// Op codes match `unary_code` in backend/gpu/elementwise.rs. NaN behaves as on
// the CPU: relu and clamp keep it, sign maps it to 0.
__device__ float unary_f(unsigned op, float x, float p0, float p1) {
    switch (op) {
        case 0: return -x;
        case 1: return fabsf(x);
        case 2: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case 3: return x > 0.0f ? 1.0f : 0.0f;
        case 4: return expf(x);
        case 5: return logf(x);
        case 6: return sqrtf(x);
        case 7: return rsqrtf(x);
        case 8: return x * x;
        case 9: return 1.0f / x;
        case 10: return tanhf(x);
        case 11: return sigmoid_f(x);
        case 12: return (x > 0.0f || is_nan(x)) ? x : 0.0f;
        case 13: return sinf(x);
        case 14: return cosf(x);
        case 15: return erf_approx(x);
        case 16: return x * sigmoid_f(x);
        case 17: return 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f));
        case 18: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case 19: return pow_f(x, p0);
        case 20: return x * p0 + p1;
        case 21: return x > 0.0f ? x : x * p0;
        case 22: return x > 0.0f ? x : p0 * (expf(x) - 1.0f);
        case 23: return p0 * x > p1 ? x : logf(1.0f + expf(p0 * x)) / p0;
        case 24: return is_nan(x) ? x : fminf(fmaxf(x, p0), p1);
        case 25: return x > 0.0f ? 1.0f : p0;
        case 26: { float s = sigmoid_f(x); return s * (1.0f + x * (1.0f - s)); }
        default: return f32_nan();
    }
}

__device__ float binary_f(unsigned op, float x, float y) {
    switch (op) {
        case 0: return x + y;
        case 1: return x - y;
        case 2: return x * y;
        case 3: return x / y;
        case 4: return (is_nan(x) || is_nan(y)) ? x + y : fmaxf(x, y);
        case 5: return (is_nan(x) || is_nan(y)) ? x + y : fminf(x, y);
        case 6: return x == y ? 1.0f : 0.0f;
        case 7: return x != y ? 1.0f : 0.0f;
        case 8: return x < y ? 1.0f : 0.0f;
        case 9: return x <= y ? 1.0f : 0.0f;
        case 10: return x > y ? 1.0f : 0.0f;
        case 11: return x >= y ? 1.0f : 0.0f;
        case 12: return pow_f(x, y);
        default: return f32_nan();
    }
}

// P: n, rank, op, p0, p1, shape[8], strides[8], offset
KILN_KERNEL(elementwise_unary_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    float x = arg_buf<const float>(a, 0)[P[21] + strided_at(P, i, P[1], 5, 13)];
    arg_buf<float>(a, 3)[i] = unary_f(P[2], x, pf(a, 3), pf(a, 4));
}

// P: n, rank, op, shape[8], a strides[8], a offset, b strides[8], b offset
KILN_KERNEL(elementwise_binary_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    float x = arg_buf<const float>(a, 0)[P[19] + strided_at(P, i, P[1], 3, 11)];
    float y = arg_buf<const float>(a, 1)[P[28] + strided_at(P, i, P[1], 3, 20)];
    arg_buf<float>(a, 3)[i] = binary_f(P[2], x, y);
}

// out = cond != 0 ? b : c.
// P: n, rank, shape[8], cond strides[8], offset, b strides[8], offset, c strides[8], offset
KILN_KERNEL(elementwise_where_f32) {
    const unsigned* P = a.p;
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    float cond = arg_buf<const float>(a, 0)[P[18] + strided_at(P, i, P[1], 2, 10)];
    float x = arg_buf<const float>(a, 1)[P[27] + strided_at(P, i, P[1], 2, 19)];
    float y = arg_buf<const float>(a, 2)[P[36] + strided_at(P, i, P[1], 2, 28)];
    arg_buf<float>(a, 3)[i] = cond != 0.0f ? x : y;
}
