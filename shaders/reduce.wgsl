// Row reductions (sum, max/min with first-index ties, NaN wins as in torch):
// a workgroup tree-reduces one chunk of one row; long rows take a second
// pass over the per-chunk partials. Fixed order: results are deterministic.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> idx_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> vals: array<f32>;
@group(0) @binding(4) var<storage, read_write> idx_out: array<u32>;

const WG: u32 = 256u;
var<workgroup> sv: array<f32, 256>;
var<workgroup> si: array<u32, 256>;

// Is (v, i) a better pick than (w, j) for op 1 = max, 2 = min?
fn better(op: u32, v: f32, i: u32, w: f32, j: u32) -> bool {
    if (is_nan(w)) {
        return is_nan(v) && i < j;
    }
    if (is_nan(v)) {
        return true;
    }
    if (v == w) {
        return i < j;
    }
    return select((v < w), (v > w), op == 1u);
}

// P: rows, len, op (0 sum, 1 max, 2 min), x offset, chunk, chunks, has idx_in
@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let g = wg_flat(wid, nwg);
    let len = P[1];
    let op = P[2];
    let chunk = P[4];
    let chunks = P[5];
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (g >= P[0] * chunks) {
        return;
    }
    let row = g / chunks;
    let start = (g % chunks) * chunk;
    let end = min(len, start + chunk);
    let base = P[3] + row * len;
    var acc = 0.0;
    var ai = 0xffffffffu;
    var have = false;
    for (var k = start + li; k < end; k += WG) {
        let v = x[base + k];
        var i = k;
        if (P[6] == 1u) {
            i = idx_in[2u * (row * len + k)];
        }
        if (op == 0u) {
            acc += v;
        } else if (!have || better(op, v, i, acc, ai)) {
            acc = v;
            ai = i;
            have = true;
        }
    }
    sv[li] = acc;
    si[li] = select(0xffffffffu, ai, have);
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            let v = sv[li + s];
            let i = si[li + s];
            if (op == 0u) {
                sv[li] += v;
            } else if (i != 0xffffffffu && (si[li] == 0xffffffffu || better(op, v, i, sv[li], si[li]))) {
                sv[li] = v;
                si[li] = i;
            }
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        vals[g] = sv[0];
        idx_out[2u * g] = select(si[0], 0u, op == 0u);
        idx_out[2u * g + 1u] = 0u;
    }
}
