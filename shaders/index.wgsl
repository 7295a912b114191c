// Index ops over (outer, dim, inner) splits. Selections move raw words (any
// dtype); the adds are gathers over the index (one thread per output
// element, fixed order: deterministic, no float atomics).
// P: outer, x dim size, inner, index dim size k, words per element, x offset, index offset
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> ix: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

fn index_at(i: u32) -> u32 {
    return ix[2u * (P[6] + i)];
}

// out[o, j, r] = x[o, idx[o, j, r], r]   (idx shaped like out)
@compute @workgroup_size(256)
fn index_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let inner = P[2];
    let k = P[3];
    if (i >= P[0] * k * inner) {
        return;
    }
    let o = i / (k * inner);
    let r = i % inner;
    let src = (o * P[1] + index_at(i)) * inner + r;
    for (var w = 0u; w < P[4]; w++) {
        out[i * P[4] + w] = x[(P[5] + src) * P[4] + w];
    }
}

// out[o, j, r] = x[o, idx[j], r]   (1-D idx of length k)
@compute @workgroup_size(256)
fn index_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let inner = P[2];
    let k = P[3];
    if (i >= P[0] * k * inner) {
        return;
    }
    let o = i / (k * inner);
    let j = (i / inner) % k;
    let src = (o * P[1] + index_at(j)) * inner + i % inner;
    for (var w = 0u; w < P[4]; w++) {
        out[i * P[4] + w] = x[(P[5] + src) * P[4] + w];
    }
}

// out[o, t, r] = Σ_j [idx(o, j, r) == t] · src[o, j, r], f32.
// P[1] is the output dim size here; P[7] = 1 when idx is 1-D (index_add).
@compute @workgroup_size(256)
fn index_add_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let len = P[1];
    let inner = P[2];
    let k = P[3];
    if (i >= P[0] * len * inner) {
        return;
    }
    let o = i / (len * inner);
    let t = (i / inner) % len;
    let r = i % inner;
    var s = 0.0;
    for (var j = 0u; j < k; j++) {
        let at = (o * k + j) * inner + r;
        let target_idx = select(index_at(at), index_at(j), P[7] == 1u);
        if (target_idx == t) {
            s += bitcast<f32>(x[P[5] + at]);
        }
    }
    out[i] = bitcast<u32>(s);
}
