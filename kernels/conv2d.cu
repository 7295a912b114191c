// conv2d as implicit GEMM: each pass is C[M×N] = A[M×K]·B[K×N] per group,
// with A and B gathered from the tensors straight into the shared-memory
// tiles of gemm_tile_64x64 (common.cuh): no im2col buffer, f32 accumulation.
//   fwd:        M = O/g,   N = batch·OH·OW, K = C/g·kh·kw   (in0 = x,  in1 = w)
//   bwd_input:  M = C/g,   N = batch·H·W,   K = O/g·kh·kw   (in0 = dy, in1 = w)
//   bwd_weight: M = O/g,   N = C/g·kh·kw,   K = batch·OH·OW (in0 = x,  in1 = dy)
// Port of shaders/conv2d.wgsl.
// P: n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups, in0 offset, in1 offset
#include "common.cuh"

struct Geom {
    unsigned n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, cg, og;
};

__device__ __forceinline__ Geom geom(const unsigned* P) {
    return Geom{P[0], P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8], P[9], P[10], P[11], P[12], P[13], P[14],
                P[1] / P[15], P[4] / P[15]};
}

// Reads element i of input `which` (0 = in0, 1 = in1) as f32.
template <int MODE, class Load>
__device__ float x_tap(const Geom& q, const unsigned* P, Load load, unsigned ni, unsigned ch, unsigned oy, unsigned ox,
                       unsigned ky, unsigned kx) {
    int iy = (int)(oy * q.sh + ky * q.dh) - (int)q.ph;
    int ix = (int)(ox * q.sw + kx * q.dw) - (int)q.pw;
    if (iy < 0 || ix < 0 || iy >= (int)q.h || ix >= (int)q.w) return 0.0f;
    return load(0, P[16] + ((ni * q.c + ch) * q.h + (unsigned)iy) * q.w + (unsigned)ix);
}

template <int MODE, class Load>
__device__ float a_val(const Geom& q, const unsigned* P, Load load, unsigned g, unsigned m, unsigned kk) {
    unsigned taps = q.kh * q.kw;
    if (MODE == 0) return load(1, P[17] + (g * q.og + m) * q.cg * taps + kk);
    if (MODE == 1) return load(1, P[17] + ((g * q.og + kk / taps) * q.cg + m) * taps + kk % taps);
    unsigned plane = q.oh * q.ow;
    return load(1, P[17] + ((kk / plane) * q.o + g * q.og + m) * plane + kk % plane);
}

template <int MODE, class Load>
__device__ float b_val(const Geom& q, const unsigned* P, Load load, unsigned g, unsigned kk, unsigned col) {
    unsigned taps = q.kh * q.kw;
    if (MODE == 0) {
        unsigned plane = q.oh * q.ow, r = kk % taps, p = col % plane;
        return x_tap<MODE>(q, P, load, col / plane, g * q.cg + kk / taps, p / q.ow, p % q.ow, r / q.kw, r % q.kw);
    }
    if (MODE == 1) {
        // dy at the output pixel whose tap (ky, kx) lands on input (iy, ix).
        unsigned plane = q.h * q.w, ni = col / plane, iy = (col % plane) / q.w, ix = col % q.w;
        unsigned co = kk / taps, ky = (kk % taps) / q.kw, kx = kk % q.kw;
        int ty = (int)(iy + q.ph) - (int)(ky * q.dh);
        int tx = (int)(ix + q.pw) - (int)(kx * q.dw);
        if (ty < 0 || tx < 0 || (unsigned)ty % q.sh != 0 || (unsigned)tx % q.sw != 0) return 0.0f;
        unsigned oy = (unsigned)ty / q.sh, ox = (unsigned)tx / q.sw;
        if (oy >= q.oh || ox >= q.ow) return 0.0f;
        return load(0, P[16] + ((ni * q.o + g * q.og + co) * q.oh + oy) * q.ow + ox);
    }
    unsigned plane = q.oh * q.ow, p = kk % plane, r = col % taps;
    return x_tap<MODE>(q, P, load, kk / plane, g * q.cg + col / taps, p / q.ow, p % q.ow, r / q.kw, r % q.kw);
}

__device__ __forceinline__ unsigned out_index(int mode, const Geom& q, unsigned g, unsigned m, unsigned col) {
    if (mode == 0) {
        unsigned plane = q.oh * q.ow;
        return ((col / plane) * q.o + g * q.og + m) * plane + col % plane;
    }
    if (mode == 1) {
        unsigned plane = q.h * q.w;
        return ((col / plane) * q.c + g * q.cg + m) * plane + col % plane;
    }
    return (g * q.og + m) * q.cg * q.kh * q.kw + col;
}

template <int MODE, class Load, class Store>
__device__ void conv_gemm(const KernelArgs& a, Load load, Store store) {
    const unsigned* P = a.p;
    Geom q = geom(P);
    unsigned mm = q.og, nn = q.n * q.oh * q.ow, kd = q.cg * q.kh * q.kw;
    if (MODE == 1) {
        mm = q.cg;
        nn = q.n * q.h * q.w;
        kd = q.og * q.kh * q.kw;
    } else if (MODE == 2) {
        nn = q.cg * q.kh * q.kw;
        kd = q.n * q.oh * q.ow;
    }
    unsigned tiles_m = (mm + 63) / 64, tiles_n = (nn + 63) / 64, flat = block_flat();
    unsigned tn = flat % tiles_n, tm = (flat / tiles_n) % tiles_m, g = flat / (tiles_n * tiles_m);
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (g >= P[15]) return;
    gemm_tile_64x64(
        mm, nn, kd, tm, tn, [&](unsigned r, unsigned d) { return a_val<MODE>(q, P, load, g, r, d); },
        [&](unsigned d, unsigned c) { return b_val<MODE>(q, P, load, g, d, c); },
        [&](unsigned r, unsigned c, float v) { store(out_index(MODE, q, g, r, c), v); });
}

template <int MODE>
__device__ void conv_f32(const KernelArgs& a) {
    const float* in0 = arg_buf<const float>(a, 0);
    const float* in1 = arg_buf<const float>(a, 1);
    float* out = arg_buf<float>(a, 2);
    conv_gemm<MODE>(a, [&](int which, unsigned i) { return which == 0 ? in0[i] : in1[i]; },
                    [&](unsigned i, float v) { out[i] = v; });
}

template <int MODE>
__device__ void conv_f16(const KernelArgs& a) {
    const unsigned short* in0 = arg_buf<const unsigned short>(a, 0);
    const unsigned short* in1 = arg_buf<const unsigned short>(a, 1);
    unsigned short* out = arg_buf<unsigned short>(a, 2);
    conv_gemm<MODE>(a, [&](int which, unsigned i) { return half_to_float(which == 0 ? in0[i] : in1[i]); },
                    [&](unsigned i, float v) { out[i] = (unsigned short)half_bits(v); });
}

KILN_KERNEL(conv2d_fwd_f32) { conv_f32<0>(a); }
KILN_KERNEL(conv2d_bwd_input_f32) { conv_f32<1>(a); }
KILN_KERNEL(conv2d_bwd_weight_f32) { conv_f32<2>(a); }
KILN_KERNEL(conv2d_fwd_f16) { conv_f16<0>(a); }
KILN_KERNEL(conv2d_bwd_input_f16) { conv_f16<1>(a); }
KILN_KERNEL(conv2d_bwd_weight_f16) { conv_f16<2>(a); }
