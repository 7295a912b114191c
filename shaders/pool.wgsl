// avg_pool2d forward and adjoint, max_pool2d's argmax: one thread per
// output (forward, argmax) or per input element (adjoint, a gather: no atomics).
// P: planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, count_include_pad, x offset
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

// Clipped window [lo, hi) of output o along one axis, and its padded extent.
fn span(o: u32, s: u32, p: u32, k: u32, len: u32) -> vec3<i32> {
    let start = i32(o * s) - i32(p);
    let end_padded = min(start + i32(k), i32(len + p));
    return vec3<i32>(max(start, 0), min(end_padded, i32(len)), end_padded - start);
}

fn divisor(ry: vec3<i32>, rx: vec3<i32>) -> f32 {
    if (P[13] == 1u) {
        return f32(ry.z * rx.z);
    }
    return f32((ry.y - ry.x) * (rx.y - rx.x));
}

@compute @workgroup_size(256)
fn avg_pool2d_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let ohw = P[3] * P[4];
    if (i >= P[0] * ohw) {
        return;
    }
    let plane = i / ohw;
    let oy = (i % ohw) / P[4];
    let ox = i % P[4];
    let ry = span(oy, P[7], P[9], P[5], P[1]);
    let rx = span(ox, P[8], P[10], P[6], P[2]);
    var s = 0.0;
    for (var iy = ry.x; iy < ry.y; iy++) {
        for (var ix = rx.x; ix < rx.y; ix++) {
            s += x[P[14] + (plane * P[1] + u32(iy)) * P[2] + u32(ix)];
        }
    }
    out[i] = s / divisor(ry, rx);
}

// dx[iy, ix] = Σ over the windows that cover it of dy / divisor.
@compute @workgroup_size(256)
fn avg_pool2d_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let hw = P[1] * P[2];
    if (i >= P[0] * hw) {
        return;
    }
    let plane = i / hw;
    let iy = i32((i % hw) / P[2]);
    let ix = i32(i % P[2]);
    // Outputs whose window start o·s − p lies in (i − k, i].
    let oy0 = max(iy + i32(P[9]) - i32(P[5]) + i32(P[7]), 0) / i32(P[7]);
    let ox0 = max(ix + i32(P[10]) - i32(P[6]) + i32(P[8]), 0) / i32(P[8]);
    let oy1 = min((iy + i32(P[9])) / i32(P[7]), i32(P[3]) - 1);
    let ox1 = min((ix + i32(P[10])) / i32(P[8]), i32(P[4]) - 1);
    var s = 0.0;
    for (var oy = oy0; oy <= oy1; oy++) {
        let ry = span(u32(oy), P[7], P[9], P[5], P[1]);
        if (iy < ry.x || iy >= ry.y) {
            continue;
        }
        for (var ox = ox0; ox <= ox1; ox++) {
            let rx = span(u32(ox), P[8], P[10], P[6], P[2]);
            if (ix < rx.x || ix >= rx.y) {
                continue;
            }
            s += x[P[14] + (plane * P[3] + u32(oy)) * P[4] + u32(ox)] / divisor(ry, rx);
        }
    }
    out[i] = s;
}

// Index of each window's maximum within its plane; first wins, NaN wins.
@compute @workgroup_size(256)
fn max_pool2d_indices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    let ohw = P[3] * P[4];
    if (i >= P[0] * ohw) {
        return;
    }
    let plane = i / ohw;
    let oy = (i % ohw) / P[4];
    let ox = i % P[4];
    var best = 0.0;
    var at = 0u;
    var have = false;
    for (var ky = 0u; ky < P[5]; ky++) {
        let iy = i32(oy * P[7] + ky * P[11]) - i32(P[9]);
        if (iy < 0 || iy >= i32(P[1])) {
            continue;
        }
        for (var kx = 0u; kx < P[6]; kx++) {
            let ix = i32(ox * P[8] + kx * P[12]) - i32(P[10]);
            if (ix < 0 || ix >= i32(P[2])) {
                continue;
            }
            let pos = u32(iy) * P[2] + u32(ix);
            let v = x[P[14] + plane * P[1] * P[2] + pos];
            if (!have || (!is_nan(best) && (v > best || is_nan(v)))) {
                best = v;
                at = pos;
                have = true;
            }
        }
    }
    idx[2u * i] = at;
    idx[2u * i + 1u] = 0u;
}
