// Batched C = A·B over strided A (batch…, m, k) and B (batch…, k, n): 64×64
// output tiles, 16-deep K slices in shared memory, 4×4 outputs per thread
// (rows ty + 16i, cols tx + 16j: coalesced stores). f32 accumulation; the
// f16 variant stores tensors as IEEE halves. Port of shaders/matmul.wgsl.
#include "common.cuh"

template <class Load, class Store>
__device__ void matmul_tile(const KernelArgs& a, Load load, Store store) {
    constexpr unsigned TM = 64, TN = 64, TK = 16;
    __shared__ float As[TK * TM];
    __shared__ float Bs[TK * TN];
    const unsigned* P = a.p;
    unsigned m = P[0], k = P[1], n = P[2];
    unsigned tiles_m = (m + TM - 1) / TM, tiles_n = (n + TN - 1) / TN;
    unsigned g = block_flat();
    unsigned tn = g % tiles_n, tm = (g / tiles_n) % tiles_m, z = g / (tiles_n * tiles_m);
    unsigned oa = P[21] + strided_at(P, z, P[4], 5, 13);
    unsigned ob = P[32] + strided_at(P, z, P[4], 5, 24);
    unsigned rsa = P[22], csa = P[23], rsb = P[33], csb = P[34];
    unsigned li = threadIdx.x, tx = li % 16, ty = li / 16;
    float acc[16] = {};
    for (unsigned t = 0; t < k; t += TK) {
        for (unsigned e = li; e < TK * TM; e += 256) {
            unsigned r = e % TM, d = e / TM, gr = tm * TM + r, gd = t + d, gq = tn * TN + r;
            As[d * TM + r] = (gr < m && gd < k) ? load(0, oa + gr * rsa + gd * csa) : 0.0f;
            Bs[d * TN + r] = (gd < k && gq < n) ? load(1, ob + gd * rsb + gq * csb) : 0.0f;
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
    unsigned oc = z * m * n;
    for (unsigned i = 0; i < 4; ++i) {
        unsigned r = tm * TM + ty + 16 * i;
        for (unsigned j = 0; j < 4; ++j) {
            unsigned q = tn * TN + tx + 16 * j;
            if (r < m && q < n) store(oc + r * n + q, acc[i * 4 + j]);
        }
    }
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
