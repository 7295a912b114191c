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

// f16 packs two halves per word. One thread per destination word, so no
// two threads write one word: the destination is the dense run
// [dst offset, dst offset + n) in halves; halves outside it keep their bits.
// P: as copy_strided (words/elem and dst strides unused)
@compute @workgroup_size(256)
fn copy_strided_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let n = P[0];
    let doff = P[28];
    let word = doff / 2u + wg_flat(wid, nwg) * 256u + li;
    if (word * 2u >= doff + n) {
        return;
    }
    var bits = dst[word];
    for (var h = 0u; h < 2u; h++) {
        let pos = word * 2u + h;
        if (pos >= doff && pos < doff + n) {
            let s = P[19] + strided_at(pos - doff, P[1], 3u, 11u);
            let v = (src[s / 2u] >> (16u * (s % 2u))) & 0xffffu;
            bits = (bits & ~(0xffffu << (16u * h))) | (v << (16u * h));
        }
    }
    dst[word] = bits;
}

// f32 → f16 bits, rounding to nearest; overflow → ±inf and NaN → NaN as in torch.
fn half_bits(x: f32) -> u32 {
    if (is_nan(x)) {
        return 0x7e00u;
    }
    if (abs(x) >= 65520.0) {
        return select(0x7c00u, 0xfc00u, x < 0.0);
    }
    return pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu;
}

// P: n, src offset. One thread per output word (two halves).
@compute @workgroup_size(256)
fn copy_cast_f32_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let w = wg_flat(wid, nwg) * 256u + li;
    let i = 2u * w;
    if (i >= P[0]) {
        return;
    }
    var hi = 0u;
    if (i + 1u < P[0]) {
        hi = half_bits(bitcast<f32>(src[P[1] + i + 1u]));
    }
    dst[w] = half_bits(bitcast<f32>(src[P[1] + i])) | (hi << 16u);
}

// P: n, src offset (halves).
@compute @workgroup_size(256)
fn copy_cast_f16_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = wg_flat(wid, nwg) * 256u + li;
    if (i >= P[0]) {
        return;
    }
    let s = P[1] + i;
    dst[i] = bitcast<u32>(unpack2x16float(src[s / 2u])[s % 2u]);
}
