// conv2d as implicit GEMM: each pass is C[M×N] = A[M×K]·B[K×N] per group,
// with A and B gathered from the tensors on the fly into 64×16 / 16×64
// workgroup tiles (no im2col buffer), 4×4 outputs per thread.
//   fwd:        M = O/g,   N = batch·OH·OW, K = C/g·kh·kw   (in0 = x,  in1 = w)
//   bwd_input:  M = C/g,   N = batch·H·W,   K = O/g·kh·kw   (in0 = dy, in1 = w)
//   bwd_weight: M = O/g,   N = C/g·kh·kw,   K = batch·OH·OW (in0 = x,  in1 = dy)
// P: n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups, in0 offset, in1 offset
// Tensors are `elem` (f32, or f16 storage); accumulation is f32.
@group(0) @binding(1) var<storage, read> in0: array<elem>;
@group(0) @binding(2) var<storage, read> in1: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

struct Geom {
    n: u32, c: u32, h: u32, w: u32, o: u32, kh: u32, kw: u32, oh: u32, ow: u32,
    sh: u32, sw: u32, ph: u32, pw: u32, dh: u32, dw: u32, cg: u32, og: u32,
}

fn geom() -> Geom {
    return Geom(P[0], P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8], P[9], P[10], P[11], P[12], P[13], P[14],
                P[1] / P[15], P[4] / P[15]);
}

// x[ni, ch, oy·sh + ky·dh − ph, ox·sw + kx·dw − pw], zero in the padding.
fn x_tap(q: Geom, ni: u32, ch: u32, oy: u32, ox: u32, ky: u32, kx: u32) -> f32 {
    let iy = i32(oy * q.sh + ky * q.dh) - i32(q.ph);
    let ix = i32(ox * q.sw + kx * q.dw) - i32(q.pw);
    if (iy < 0 || ix < 0 || iy >= i32(q.h) || ix >= i32(q.w)) {
        return 0.0;
    }
    return f32(in0[P[16] + ((ni * q.c + ch) * q.h + u32(iy)) * q.w + u32(ix)]);
}

fn a_val(mode: u32, q: Geom, g: u32, m: u32, kk: u32) -> f32 {
    let taps = q.kh * q.kw;
    if (mode == 0u) {
        return f32(in1[P[17] + (g * q.og + m) * q.cg * taps + kk]);
    }
    if (mode == 1u) {
        let co = kk / taps;
        return f32(in1[P[17] + ((g * q.og + co) * q.cg + m) * taps + kk % taps]);
    }
    let plane = q.oh * q.ow;
    let ni = kk / plane;
    return f32(in1[P[17] + (ni * q.o + g * q.og + m) * plane + kk % plane]);
}

fn b_val(mode: u32, q: Geom, g: u32, kk: u32, col: u32) -> f32 {
    let taps = q.kh * q.kw;
    if (mode == 0u) {
        let plane = q.oh * q.ow;
        let r = kk % taps;
        let p = col % plane;
        return x_tap(q, col / plane, g * q.cg + kk / taps, p / q.ow, p % q.ow, r / q.kw, r % q.kw);
    }
    if (mode == 1u) {
        // dy at the output pixel whose tap (ky, kx) lands on input (iy, ix).
        let plane = q.h * q.w;
        let ni = col / plane;
        let iy = (col % plane) / q.w;
        let ix = col % q.w;
        let co = kk / taps;
        let ky = (kk % taps) / q.kw;
        let kx = kk % q.kw;
        let ty = i32(iy + q.ph) - i32(ky * q.dh);
        let tx = i32(ix + q.pw) - i32(kx * q.dw);
        if (ty < 0 || tx < 0 || u32(ty) % q.sh != 0u || u32(tx) % q.sw != 0u) {
            return 0.0;
        }
        let oy = u32(ty) / q.sh;
        let ox = u32(tx) / q.sw;
        if (oy >= q.oh || ox >= q.ow) {
            return 0.0;
        }
        return f32(in0[P[16] + ((ni * q.o + g * q.og + co) * q.oh + oy) * q.ow + ox]);
    }
    let plane = q.oh * q.ow;
    let p = kk % plane;
    let r = col % taps;
    return x_tap(q, kk / plane, g * q.cg + col / taps, p / q.ow, p % q.ow, r / q.kw, r % q.kw);
}

fn out_index(mode: u32, q: Geom, g: u32, m: u32, col: u32) -> u32 {
    if (mode == 0u) {
        let plane = q.oh * q.ow;
        return ((col / plane) * q.o + g * q.og + m) * plane + col % plane;
    }
    if (mode == 1u) {
        let plane = q.h * q.w;
        return ((col / plane) * q.c + g * q.cg + m) * plane + col % plane;
    }
    return (g * q.og + m) * q.cg * q.kh * q.kw + col;
}

fn conv_gemm(mode: u32, wid: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let q = geom();
    var mm = q.og;
    var nn = q.n * q.oh * q.ow;
    var kd = q.cg * q.kh * q.kw;
    if (mode == 1u) {
        mm = q.cg;
        nn = q.n * q.h * q.w;
        kd = q.og * q.kh * q.kw;
    } else if (mode == 2u) {
        nn = q.cg * q.kh * q.kw;
        kd = q.n * q.oh * q.ow;
    }
    let tiles_m = (mm + TM - 1u) / TM;
    let tiles_n = (nn + TN - 1u) / TN;
    let flat = wg_flat(wid, nwg);
    let tn = flat % tiles_n;
    let tm = (flat / tiles_n) % tiles_m;
    let g = flat / (tiles_n * tiles_m);
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (g >= P[15]) {
        return;
    }
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<f32, 16>;
    for (var t = 0u; t < kd; t += TK) {
        for (var e = li; e < TK * TM; e += 256u) {
            let r = e % TM;
            let d = e / TM;
            let gr = tm * TM + r;
            let gq = tn * TN + r;
            let gd = t + d;
            var av = 0.0;
            var bv = 0.0;
            if (gd < kd && gr < mm) {
                av = a_val(mode, q, g, gr, gd);
            }
            if (gd < kd && gq < nn) {
                bv = b_val(mode, q, g, gd, gq);
            }
            gemm_a[d * TM + r] = av;
            gemm_b[d * TN + r] = bv;
        }
        workgroupBarrier();
        gemm_tile_fma(li, &acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = tm * TM + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = tn * TN + tx + 16u * j;
            if (r < mm && col < nn) {
                out[out_index(mode, q, g, r, col)] = elem(acc[i * 4u + j]);
            }
        }
    }
}

@compute @workgroup_size(256)
fn conv2d_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    conv_gemm(0u, wid, nwg, li);
}

@compute @workgroup_size(256)
fn conv2d_bwd_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    conv_gemm(1u, wid, nwg, li);
}

@compute @workgroup_size(256)
fn conv2d_bwd_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    conv_gemm(2u, wid, nwg, li);
}
