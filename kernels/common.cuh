// Shared by every kernel file. The same sources compile with NVRTC (for the
// GPU) and with g++ against emu/cuda_emu.h (to test their logic on a CPU).
#pragma once
#ifndef __CUDACC__
#include "emu/cuda_emu.h"
#endif
#ifdef __CUDACC_RTC__
#define KILN_DYN_SHARED(T, name) extern __shared__ T name[]
#endif

// One by-value argument per launch, shared by every kernel: the words of the
// argument block P (the same layout as the WGSL shaders' `P`, built by
// backend/params.rs) and the buffers in binding order (inputs, then outputs).
#define KILN_PARAM_WORDS 64
#define KILN_BUFFERS 8
struct KernelArgs {
    unsigned long long buf[KILN_BUFFERS];
    unsigned p[KILN_PARAM_WORDS];
};

#define KILN_KERNEL(name) extern "C" __global__ void name(const KernelArgs a)

template <class T>
__device__ __forceinline__ T* arg_buf(const KernelArgs& a, int i) {
    return reinterpret_cast<T*>(a.buf[i]);
}

__device__ __forceinline__ float pf(const KernelArgs& a, unsigned i) {
    return __uint_as_float(a.p[i]);
}

// Flat block index: the host spreads more than 65535 blocks over y.
__device__ __forceinline__ unsigned block_flat() {
    return blockIdx.x + blockIdx.y * gridDim.x;
}

// Offset of row-major element `i` of a strided view: rank, shape at
// P[sh..sh+8], strides at P[st..st+8].
__device__ __forceinline__ unsigned strided_at(const unsigned* P, unsigned i, unsigned rank, unsigned sh, unsigned st) {
    unsigned rem = i, off = 0;
    for (int k = (int)rank - 1; k >= 0; --k) {
        unsigned s = P[sh + k];
        off += (rem % s) * P[st + k];
        rem /= s;
    }
    return off;
}

__device__ __forceinline__ float f32_inf() {
    return __uint_as_float(0x7f800000u);
}
__device__ __forceinline__ float f32_nan() {
    return __uint_as_float(0x7fc00000u);
}
__device__ __forceinline__ bool is_nan(float x) {
    return x != x;
}

// Sum over a warp with butterfly shuffles (every lane gets the total).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024): warp
// shuffles, then one warp over the per-warp partials. Every thread gets the
// total; `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : -f32_inf();
    for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
    return t;
}

// IEEE binary16 <-> f32 by bit manipulation (no cuda_fp16.h, so g++ and
// NVRTC compile it alike). Round to nearest even; overflow to inf.
__device__ __forceinline__ unsigned half_bits(float x) {
    unsigned f = __float_as_uint(x);
    unsigned sign = (f >> 16) & 0x8000u;
    unsigned e = (f >> 23) & 0xffu;
    unsigned m = f & 0x7fffffu;
    if (e == 0xffu) return sign | (m ? 0x7e00u : 0x7c00u);
    int he = (int)e - 127 + 15;
    if (he >= 31) return sign | 0x7c00u;
    if (he <= 0) {
        if (he < -10) return sign;
        m |= 0x800000u;
        unsigned shift = (unsigned)(14 - he);
        unsigned h = m >> shift;
        unsigned rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
        return sign | h;
    }
    unsigned h = ((unsigned)he << 10) | (m >> 13);
    unsigned rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: still correct
    return sign | h;
}

__device__ __forceinline__ float half_to_float(unsigned h) {
    unsigned sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return __uint_as_float(sign);
        float v = (float)m * (1.0f / 16777216.0f);  // m · 2^-24
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

// One 64×64 output tile of C[M×N] = A[M×K]·B[K×N] with 256 threads: 16-deep
// K slices of A and B staged in shared memory, 4×4 outputs per thread (rows
// ty + 16i, cols tx + 16j, so stores stay coalesced), f32 accumulation.
// `a_at(row, depth)` and `b_at(depth, col)` gather the operands (only called
// in range); `store(row, col, v)` writes C. Matmul and the three conv2d
// passes (implicit GEMM) differ only in these three functions.
template <class AAt, class BAt, class Store>
__device__ void gemm_tile_64x64(unsigned m, unsigned n, unsigned k, unsigned tm, unsigned tn, AAt a_at, BAt b_at,
                                Store store) {
    constexpr unsigned TM = 64, TN = 64, TK = 16;
    __shared__ float As[TK * TM];
    __shared__ float Bs[TK * TN];
    unsigned li = threadIdx.x, tx = li % 16, ty = li / 16;
    float acc[16] = {};
    for (unsigned t = 0; t < k; t += TK) {
        for (unsigned e = li; e < TK * TM; e += 256) {
            unsigned r = e % TM, d = e / TM, gr = tm * TM + r, gq = tn * TN + r, gd = t + d;
            As[d * TM + r] = (gr < m && gd < k) ? a_at(gr, gd) : 0.0f;
            Bs[d * TN + r] = (gd < k && gq < n) ? b_at(gd, gq) : 0.0f;
        }
        __syncthreads();
        for (unsigned d = 0; d < TK; ++d) {
            float av[4], bv[4];
            for (unsigned i = 0; i < 4; ++i) {
                av[i] = As[d * TM + ty + 16 * i];
                bv[i] = Bs[d * TN + tx + 16 * i];
            }
            for (unsigned i = 0; i < 4; ++i)
                for (unsigned j = 0; j < 4; ++j) acc[i * 4 + j] = fmaf(av[i], bv[j], acc[i * 4 + j]);
        }
        __syncthreads();
    }
    for (unsigned i = 0; i < 4; ++i) {
        unsigned r = tm * TM + ty + 16 * i;
        for (unsigned j = 0; j < 4; ++j) {
            unsigned c = tn * TN + tx + 16 * j;
            if (r < m && c < n) store(r, c, acc[i * 4 + j]);
        }
    }
}
