// softmax / log_softmax over dense rows: one workgroup per row, three sweeps
// (max, sum of exp, write), tree reductions in workgroup memory.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

fn tree(li: u32, is_max: bool) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (li < s) {
            red[li] = select(red[li] + red[li + s], max(red[li], red[li + s]), is_max);
        }
    }
    workgroupBarrier();
    let r = red[0];
    workgroupBarrier();
    return r;
}

// P: rows, len, log (0/1), x offset
@compute @workgroup_size(256)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let row = wg_flat(wid, nwg);
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (row >= P[0]) {
        return;
    }
    let len = P[1];
    let base = row * len;
    let xb = P[3] + base;
    var m = bitcast<f32>(0xff800000u);
    for (var k = li; k < len; k += WG) {
        m = max(m, x[xb + k]);
    }
    red[li] = m;
    m = tree(li, true);
    // A row of -inf gives NaN, as PyTorch does.
    if (m == bitcast<f32>(0xff800000u)) {
        m = 0.0;
    }
    var s = 0.0;
    for (var k = li; k < len; k += WG) {
        s += exp(x[xb + k] - m);
    }
    red[li] = s;
    s = tree(li, false);
    if (P[2] == 1u) {
        let lse = m + log(s);
        for (var k = li; k < len; k += WG) {
            y[base + k] = x[xb + k] - lse;
        }
    } else {
        let inv = 1.0 / s;
        for (var k = li; k < len; k += WG) {
            y[base + k] = exp(x[xb + k] - m) * inv;
        }
    }
}
