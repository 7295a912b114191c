// Data movement on raw words (f32 = 1 word, i64 = 2), and dtype casts.
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// P: n, rank, words/elem, shape[8], src strides[8], src offset, dst strides[8], dst offset
@compute @workgroup_size(256)
fn copy_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let es = P[2];
    let s = (P[19] + strided_at(i, P[1], 3u, 11u)) * es;
    let d = (P[28] + strided_at(i, P[1], 3u, 20u)) * es;
    for (var w = 0u; w < es; w++) {
        dst[d + w] = src[s + w];
    }
}

// P: n, src offset (elements). Truncates toward zero like torch's .long().
@compute @workgroup_size(256)
fn copy_cast_f32_i64(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let v = i32(clamp(bitcast<f32>(src[P[1] + i]), -2147483648.0, 2147483520.0));
    dst[2u * i] = bitcast<u32>(v);
    dst[2u * i + 1u] = select(0u, 0xffffffffu, v < 0);
}

// P: n, src offset (elements). Reads the low word: indices below 2^31.
@compute @workgroup_size(256)
fn copy_cast_i64_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    dst[i] = bitcast<u32>(f32(bitcast<i32>(src[2u * (P[1] + i)])));
}
