// The fused Adam/AdamW step: same arithmetic, same order as the CPU kernel.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

// P: n, g offset, beta1, beta2, 1 − beta1, 1 − beta2, weight decay, 1 − lr·wd,
//    1/sqrt(bc2), eps, lr/bc1, mode (0 none, 1 L2, 2 decoupled)
@compute @workgroup_size(256)
fn adam_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    var gi = g[P[1] + i];
    if (P[11] == 1u) {
        gi += p[i] * pf(6u);
    } else if (P[11] == 2u) {
        p[i] *= pf(7u);
    }
    // Moments below the smallest normal float are stored as 0, as on the CPU.
    let mi = m[i] * pf(2u) + gi * pf(4u);
    let vi = v[i] * pf(3u) + gi * gi * pf(5u);
    m[i] = select(mi, 0.0, abs(mi) < 1.17549435e-38);
    v[i] = select(vi, 0.0, vi < 1.17549435e-38 && pf(9u) > 0.0);  // eps = 0: v kept
    let denom = sqrt(v[i]) * pf(8u) + pf(9u);
    p[i] -= m[i] / denom * pf(10u);
}
