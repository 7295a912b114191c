// Data movement on raw 32-bit words (f32 = 1 word, i64 = 2) and dtype casts.
// Port of shaders/copy.wgsl: same argument layout, one thread per element.
#include "common.cuh"

// P: n, rank, words/elem, shape[8], src strides[8], src offset, dst strides[8], dst offset
KILN_KERNEL(copy_strided_f32) {
    const unsigned* P = a.p;
    const unsigned* src = arg_buf<const unsigned>(a, 0);
    unsigned* dst = arg_buf<unsigned>(a, 1);
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    unsigned es = P[2];
    unsigned s = (P[19] + strided_at(P, i, P[1], 3, 11)) * es;
    unsigned d = (P[28] + strided_at(P, i, P[1], 3, 20)) * es;
    for (unsigned w = 0; w < es; ++w) dst[d + w] = src[s + w];
}

// P: n, src offset. Truncates toward zero like torch's .long().
KILN_KERNEL(copy_cast_f32_i64) {
    const unsigned* P = a.p;
    const float* src = arg_buf<const float>(a, 0);
    long long* dst = arg_buf<long long>(a, 1);
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    float v = src[P[1] + i];
    dst[i] = is_nan(v) ? 0 : (long long)fmaxf(fminf(v, 9.2e18f), -9.2e18f);
}

// P: n, src offset. Exact below 2^24, rounded above (as a float cast is).
KILN_KERNEL(copy_cast_i64_f32) {
    const unsigned* P = a.p;
    const long long* src = arg_buf<const long long>(a, 0);
    float* dst = arg_buf<float>(a, 1);
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    dst[i] = (float)src[P[1] + i];
}

// f16 packs two halves per word; one thread per destination word of the
// dense destination run [dst offset, dst offset + n), so no two threads
// write one word. P: as copy_strided.
KILN_KERNEL(copy_strided_f16) {
    const unsigned* P = a.p;
    const unsigned* src = arg_buf<const unsigned>(a, 0);
    unsigned* dst = arg_buf<unsigned>(a, 1);
    unsigned n = P[0], doff = P[28];
    unsigned word = doff / 2 + block_flat() * blockDim.x + threadIdx.x;
    if (word * 2 >= doff + n) return;
    unsigned bits = dst[word];
    for (unsigned h = 0; h < 2; ++h) {
        unsigned pos = word * 2 + h;
        if (pos >= doff && pos < doff + n) {
            unsigned s = P[19] + strided_at(P, pos - doff, P[1], 3, 11);
            unsigned v = (src[s / 2] >> (16 * (s % 2))) & 0xffffu;
            bits = (bits & ~(0xffffu << (16 * h))) | (v << (16 * h));
        }
    }
    dst[word] = bits;
}

// P: n, src offset. One thread per output word (two halves).
KILN_KERNEL(copy_cast_f32_f16) {
    const unsigned* P = a.p;
    const float* src = arg_buf<const float>(a, 0);
    unsigned* dst = arg_buf<unsigned>(a, 1);
    unsigned w = block_flat() * blockDim.x + threadIdx.x;
    unsigned i = 2 * w;
    if (i >= P[0]) return;
    unsigned hi = i + 1 < P[0] ? half_bits(src[P[1] + i + 1]) : 0u;
    dst[w] = half_bits(src[P[1] + i]) | (hi << 16);
}

// P: n, src offset (halves).
KILN_KERNEL(copy_cast_f16_f32) {
    const unsigned* P = a.p;
    const unsigned* src = arg_buf<const unsigned>(a, 0);
    float* dst = arg_buf<float>(a, 1);
    unsigned i = block_flat() * blockDim.x + threadIdx.x;
    if (i >= P[0]) return;
    unsigned s = P[1] + i;
    dst[i] = half_to_float((src[s / 2] >> (16 * (s % 2))) & 0xffffu);
}
