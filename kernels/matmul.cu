// Batched C = A·B over strided A (batch…, m, k) and B (batch…, k, n), one
// 64×64 tile per block (gemm_tile_64x64 in common.cuh), f32 accumulation;
// the f16 variant stores tensors as IEEE halves. Port of shaders/matmul.wgsl.
#include "common.cuh"

template <class Load, class Store>
__device__ void matmul_tile(const KernelArgs& a, Load load, Store store) {
    const unsigned* P = a.p;
    unsigned m = P[0], k = P[1], n = P[2];
    unsigned tiles_m = (m + 63) / 64, tiles_n = (n + 63) / 64, g = block_flat();
    unsigned tn = g % tiles_n, tm = (g / tiles_n) % tiles_m, z = g / (tiles_n * tiles_m);
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (z >= P[3]) return;
    unsigned oa = P[21] + strided_at(P, z, P[4], 5, 13), ob = P[32] + strided_at(P, z, P[4], 5, 24);
    unsigned rsa = P[22], csa = P[23], rsb = P[33], csb = P[34], oc = z * m * n;
    gemm_tile_64x64(
        m, n, k, tm, tn, [&](unsigned r, unsigned d) { return load(0, oa + r * rsa + d * csa); },
        [&](unsigned d, unsigned c) { return load(1, ob + d * rsb + c * csb); },
        [&](unsigned r, unsigned c, float v) { store(oc + r * n + c, v); });
}

// P: m, k, n, batch, batch rank, batch shape[8], a batch strides[8], a offset,
//    a row stride, a col stride, b batch strides[8], b offset, b row stride, b col stride
KILN_KERNEL(matmul_fwd_f32) {
    const float* A = arg_buf<const float>(a, 0);
    const float* B = arg_buf<const float>(a, 1);
    float* C = arg_buf<float>(a, 2);
    matmul_tile(a, [&](int which, unsigned i) { return which == 0 ? A[i] : B[i]; },
                [&](unsigned i, float v) { C[i] = v; });
}

// f16 storage: halves packed two per 32-bit word. Each thread writes its
// own halves with a 16-bit store.
KILN_KERNEL(matmul_fwd_f16) {
    const unsigned short* A = arg_buf<const unsigned short>(a, 0);
    const unsigned short* B = arg_buf<const unsigned short>(a, 1);
    unsigned short* C = arg_buf<unsigned short>(a, 2);
    matmul_tile(a, [&](int which, unsigned i) { return half_to_float(which == 0 ? A[i] : B[i]); },
                [&](unsigned i, float v) { C[i] = (unsigned short)half_bits(v); });
}
