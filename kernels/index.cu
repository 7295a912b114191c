// Index ops over (outer, dim, inner) splits. Selections move raw words (any
// dtype); the adds gather over the index (one thread per output element,
// fixed order: deterministic, no float atomics). Port of shaders/index.wgsl.
// P: outer, x dim size, inner, index dim size k, words per element, x offset, index offset, 1-D index
#include "common.cuh"

__device__ __forceinline__ unsigned index_at(const KernelArgs& a, unsigned i) {
    return (unsigned)arg_buf<const long long>(a, 1)[a.p[6] + i];
}

// out[o, j, r] = x[o, idx[o, j, r], r]   (idx shaped like out)
KILN_KERNEL(index_gather_f32) {
    const unsigned* P = a.p;
    const unsigned* x = arg_buf<const unsigned>(a, 0);
    unsigned* out = arg_buf<unsigned>(a, 2);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, inner = P[2], k = P[3];
    if (i >= P[0] * k * inner) return;
    unsigned src = ((i / (k * inner)) * P[1] + index_at(a, i)) * inner + i % inner;
    for (unsigned w = 0; w < P[4]; ++w) out[i * P[4] + w] = x[(P[5] + src) * P[4] + w];
}

// out[o, j, r] = x[o, idx[j], r]   (1-D idx of length k)
KILN_KERNEL(index_select_f32) {
    const unsigned* P = a.p;
    const unsigned* x = arg_buf<const unsigned>(a, 0);
    unsigned* out = arg_buf<unsigned>(a, 2);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, inner = P[2], k = P[3];
    if (i >= P[0] * k * inner) return;
    unsigned src = ((i / (k * inner)) * P[1] + index_at(a, (i / inner) % k)) * inner + i % inner;
    for (unsigned w = 0; w < P[4]; ++w) out[i * P[4] + w] = x[(P[5] + src) * P[4] + w];
}

// out[o, t, r] = Σ_j [idx(o, j, r) == t] · src[o, j, r]; P[1] is the output
// dim size here, P[7] = 1 when idx is 1-D (index_add).
KILN_KERNEL(index_add_f32) {
    const unsigned* P = a.p;
    const float* src = arg_buf<const float>(a, 0);
    float* out = arg_buf<float>(a, 2);
    unsigned i = block_flat() * blockDim.x + threadIdx.x, len = P[1], inner = P[2], k = P[3];
    if (i >= P[0] * len * inner) return;
    unsigned o = i / (len * inner), t = (i / inner) % len, r = i % inner;
    float s = 0.0f;
    for (unsigned j = 0; j < k; ++j) {
        unsigned at = (o * k + j) * inner + r;
        if (index_at(a, P[7] == 1 ? j : at) == t) s += src[P[5] + at];
    }
    out[i] = s;
}
