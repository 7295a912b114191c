// Fused scaled-dot-product attention, f32, head sizes up to 128.
// Forward: one thread per query row, key/value tiles of 16 staged in
// workgroup memory, online softmax (no L×S matrix). Backward: D = rowsum(dO·O),
// then dQ (and dS when asked) per query row over key tiles and dK, dV per key
// row over query tiles, recomputing probabilities from the saved log-sum-exp.
// P: B, L, S, E, Ev, scale, causal, has mask, mask rank, mask shape[8],
//    mask strides[8], mask offset, q off, k off, v off, dout off, o off, lse off, want dS
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read> stats: array<f32>; // o (fwd: unused) | lse, D
@group(0) @binding(7) var<storage, read_write> out0: array<f32>;
@group(0) @binding(8) var<storage, read_write> out1: array<f32>;

const RW: u32 = 64u;   // query rows per workgroup
const KT: u32 = 16u;   // keys per tile
var<workgroup> Ks: array<f32, 2048>; // [KT][E]
var<workgroup> Vs: array<f32, 2048>; // [KT][Ev]

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// Scaled score of (batch b, query i, key j) given q·k; −inf where masked out.
fn score(b: u32, i: u32, j: u32, qk: f32) -> f32 {
    if (P[6] == 1u && j > i) {
        return neg_inf();
    }
    var s = qk * pf(5u);
    if (P[7] == 1u) {
        s += mask[P[25] + strided_at((b * P[1] + i) * P[2] + j, P[8], 9u, 17u)];
    }
    return s;
}

// out0 = O (B, L, Ev), out1 = lse (B, L)
@compute @workgroup_size(64)
fn attention_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let L = P[1];
    let S = P[2];
    let E = P[3];
    let Ev = P[4];
    let blocks = (L + RW - 1u) / RW;
    let flat = wg_flat(wid, nwg);
    let b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) {
        return;
    }
    let i = (flat % blocks) * RW + li;
    let live = i < L;
    var qv: array<f32, 128>;
    var acc: array<f32, 128>;
    var sc: array<f32, 16>;
    if (live) {
        for (var e = 0u; e < E; e++) {
            qv[e] = q[P[26] + (b * L + i) * E + e];
        }
    }
    var m = neg_inf();
    var l = 0.0;
    for (var j0 = 0u; j0 < S; j0 += KT) {
        let nj = min(KT, S - j0);
        workgroupBarrier();
        for (var t = li; t < nj * E; t += RW) {
            Ks[t] = k[P[27] + (b * S + j0) * E + t];
        }
        for (var t = li; t < nj * Ev; t += RW) {
            Vs[t] = v[P[28] + (b * S + j0) * Ev + t];
        }
        workgroupBarrier();
        if (live) {
            var tmax = neg_inf();
            for (var jj = 0u; jj < nj; jj++) {
                var d = 0.0;
                for (var e = 0u; e < E; e++) {
                    d = fma(qv[e], Ks[jj * E + e], d);
                }
                sc[jj] = score(b, i, j0 + jj, d);
                tmax = max(tmax, sc[jj]);
            }
            if (tmax != neg_inf()) {
                let new_m = max(m, tmax);
                let corr = select(exp(m - new_m), 0.0, m == neg_inf());
                l *= corr;
                for (var e = 0u; e < Ev; e++) {
                    acc[e] *= corr;
                }
                for (var jj = 0u; jj < nj; jj++) {
                    let p = select(exp(sc[jj] - new_m), 0.0, sc[jj] == neg_inf());
                    l += p;
                    for (var e = 0u; e < Ev; e++) {
                        acc[e] = fma(p, Vs[jj * Ev + e], acc[e]);
                    }
                }
                m = new_m;
            }
        }
    }
    if (live) {
        // A fully masked row attends to nothing: output 0 as PyTorch (2.5+),
        // and lse = +inf so that the backward's P = exp(s − lse) is 0.
        let dead = l == 0.0;
        let inv = select(1.0 / l, 0.0, dead);
        for (var e = 0u; e < Ev; e++) {
            out0[(b * L + i) * Ev + e] = acc[e] * inv;
        }
        out1[b * L + i] = select(m + log(l), -neg_inf(), dead);
    }
}

// out0 = [lse | D] (2·B·L) with D_r = dO_r · O_r. Here `k` holds O and `q` the lse.
@compute @workgroup_size(64)
fn attention_bwd_d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let r = wg_flat(wid, nwg) * 64u + li;
    let rows = P[0] * P[1];
    if (r >= rows) {
        return;
    }
    let Ev = P[4];
    var d = 0.0;
    for (var e = 0u; e < Ev; e++) {
        d = fma(dout[P[29] + r * Ev + e], k[P[30] + r * Ev + e], d);
    }
    out0[r] = q[P[31] + r];
    out0[rows + r] = d;
}

// out0 = dQ (B, L, E); out1 = dS (B, L, S) when P[32] = 1. A thread per
// query row, key/value tiles staged in workgroup memory as in the forward;
// P = exp(s − lse) and dS = P·(dO·V − D) are recomputed per tile.
@compute @workgroup_size(64)
fn attention_bwd_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let L = P[1];
    let S = P[2];
    let E = P[3];
    let Ev = P[4];
    let blocks = (L + RW - 1u) / RW;
    let flat = wg_flat(wid, nwg);
    let b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) {
        return;
    }
    let i = (flat % blocks) * RW + li;
    let live = i < L;
    let r = b * L + i;
    var qv: array<f32, 128>;
    var dov: array<f32, 128>;
    var acc: array<f32, 128>;
    var lse = 0.0;
    var dsum = 0.0;
    if (live) {
        for (var e = 0u; e < E; e++) {
            qv[e] = q[P[26] + r * E + e];
        }
        for (var e = 0u; e < Ev; e++) {
            dov[e] = dout[P[29] + r * Ev + e];
        }
        lse = stats[r];
        dsum = stats[P[0] * L + r];
    }
    for (var j0 = 0u; j0 < S; j0 += KT) {
        let nj = min(KT, S - j0);
        workgroupBarrier();
        for (var t = li; t < nj * E; t += RW) {
            Ks[t] = k[P[27] + (b * S + j0) * E + t];
        }
        for (var t = li; t < nj * Ev; t += RW) {
            Vs[t] = v[P[28] + (b * S + j0) * Ev + t];
        }
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < nj; jj++) {
                var qk = 0.0;
                for (var e = 0u; e < E; e++) {
                    qk = fma(qv[e], Ks[jj * E + e], qk);
                }
                let s = score(b, i, j0 + jj, qk);
                var ds = 0.0;
                if (s != neg_inf()) {
                    var dp = 0.0;
                    for (var e = 0u; e < Ev; e++) {
                        dp = fma(dov[e], Vs[jj * Ev + e], dp);
                    }
                    ds = exp(s - lse) * (dp - dsum);
                }
                if (P[32] == 1u) {
                    out1[r * S + j0 + jj] = ds;
                }
                for (var e = 0u; e < E; e++) {
                    acc[e] = fma(ds, Ks[jj * E + e], acc[e]);
                }
            }
        }
    }
    if (live) {
        for (var e = 0u; e < E; e++) {
            out0[r * E + e] = acc[e] * pf(5u);
        }
    }
}

// out0 = dK (B, S, E), out1 = dV (B, S, Ev). A thread per key row; query
// rows and their dO staged in tiles (Ks holds Q, Vs holds dO); lse and D are
// read straight from `stats`, so the two tiles stay within WebGPU's default
// 16 KiB of workgroup memory.

@compute @workgroup_size(64)
fn attention_bwd_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let L = P[1];
    let S = P[2];
    let E = P[3];
    let Ev = P[4];
    let blocks = (S + RW - 1u) / RW;
    let flat = wg_flat(wid, nwg);
    let b = flat / blocks;
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (b >= P[0]) {
        return;
    }
    let j = (flat % blocks) * RW + li;
    let live = j < S;
    let c = b * S + j;
    var kv: array<f32, 128>;
    var vv: array<f32, 128>;
    var dk: array<f32, 128>;
    var dv: array<f32, 128>;
    if (live) {
        for (var e = 0u; e < E; e++) {
            kv[e] = k[P[27] + c * E + e];
        }
        for (var e = 0u; e < Ev; e++) {
            vv[e] = v[P[28] + c * Ev + e];
        }
    }
    for (var i0 = 0u; i0 < L; i0 += KT) {
        let ni = min(KT, L - i0);
        workgroupBarrier();
        for (var t = li; t < ni * E; t += RW) {
            Ks[t] = q[P[26] + (b * L + i0) * E + t];
        }
        for (var t = li; t < ni * Ev; t += RW) {
            Vs[t] = dout[P[29] + (b * L + i0) * Ev + t];
        }
        workgroupBarrier();
        if (live) {
            for (var ii = 0u; ii < ni; ii++) {
                var qk = 0.0;
                for (var e = 0u; e < E; e++) {
                    qk = fma(Ks[ii * E + e], kv[e], qk);
                }
                let s = score(b, i0 + ii, j, qk);
                if (s != neg_inf()) {
                    let p = exp(s - stats[b * L + i0 + ii]);
                    var dp = 0.0;
                    for (var e = 0u; e < Ev; e++) {
                        dp = fma(Vs[ii * Ev + e], vv[e], dp);
                        dv[e] = fma(p, Vs[ii * Ev + e], dv[e]);
                    }
                    let ds = p * (dp - stats[P[0] * L + b * L + i0 + ii]);
                    for (var e = 0u; e < E; e++) {
                        dk[e] = fma(ds, Ks[ii * E + e], dk[e]);
                    }
                }
            }
        }
    }
    if (live) {
        for (var e = 0u; e < E; e++) {
            out0[c * E + e] = dk[e] * pf(5u);
        }
        for (var e = 0u; e < Ev; e++) {
            out1[c * Ev + e] = dv[e];
        }
    }
}
