// Row reductions (sum; max/min with first-index ties, NaN wins as in
// torch): a block reduces one chunk of one row with warp shuffles, then
// across warps; long rows take another pass over the per-chunk partials.
// Port of shaders/reduce.wgsl (same arguments). Fixed order: deterministic.
#include "common.cuh"

// Is (v, i) a better pick than (w, j) for op 1 = max, 2 = min?
__device__ __forceinline__ bool better(unsigned op, float v, unsigned i, float w, unsigned j) {
    if (j == 0xffffffffu) return i != 0xffffffffu;
    if (i == 0xffffffffu) return false;
    if (is_nan(w)) return is_nan(v) && i < j;
    if (is_nan(v)) return true;
    if (v == w) return i < j;
    return op == 1 ? v > w : v < w;
}

// P: rows, len, op (0 sum, 1 max, 2 min), x offset, chunk, chunks, has idx_in
KILN_KERNEL(reduce_rows_f32) {
    const unsigned* P = a.p;
    const float* x = arg_buf<const float>(a, 0);
    const unsigned* idx_in = arg_buf<const unsigned>(a, 1);
    float* vals = arg_buf<float>(a, 2);
    unsigned* idx_out = arg_buf<unsigned>(a, 3);
    __shared__ float sv[32];
    __shared__ unsigned si[32];
    unsigned g = block_flat(), len = P[1], op = P[2], chunk = P[4], chunks = P[5];
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (g >= P[0] * chunks) return;
    unsigned row = g / chunks, start = (g % chunks) * chunk, end = min(len, start + chunk);
    unsigned base = P[3] + row * len;
    float acc = 0.0f;
    unsigned ai = 0xffffffffu;
    for (unsigned k = start + threadIdx.x; k < end; k += blockDim.x) {
        float v = x[base + k];
        unsigned i = P[6] == 1 ? idx_in[2 * (row * len + k)] : k;
        if (op == 0) acc += v;
        else if (better(op, v, i, acc, ai)) {
            acc = v;
            ai = i;
        }
    }
    if (op == 0) {
        float s = block_sum(acc, sv);
        if (threadIdx.x == 0) {
            vals[g] = s;
            idx_out[2 * g] = 0;
            idx_out[2 * g + 1] = 0;
        }
        return;
    }
    // Arg-reduce: shuffle (value, index) pairs within the warp, then warp 0.
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, acc, o);
        unsigned i = __shfl_xor_sync(0xffffffffu, ai, o);
        if (better(op, v, i, acc, ai)) {
            acc = v;
            ai = i;
        }
    }
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = acc;
        si[warp] = ai;
    }
    __syncthreads();
    if (warp == 0) {
        acc = lane < (blockDim.x >> 5) ? sv[lane] : 0.0f;
        ai = lane < (blockDim.x >> 5) ? si[lane] : 0xffffffffu;
        for (int o = 16; o > 0; o >>= 1) {
            float v = __shfl_xor_sync(0xffffffffu, acc, o);
            unsigned i = __shfl_xor_sync(0xffffffffu, ai, o);
            if (better(op, v, i, acc, ai)) {
                acc = v;
                ai = i;
            }
        }
        if (lane == 0) {
            vals[g] = acc;
            idx_out[2 * g] = ai;
            idx_out[2 * g + 1] = 0;
        }
    }
}
