// Prepended to every kiln shader. Binding 0 is the argument block `P`
// (u32 words, floats bit-cast); inputs follow read-only, outputs read-write.
@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P[i]);
}

// Flat workgroup index: the host spreads more than 65535 groups over y.
fn wg_flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Offset of row-major element `i` of a strided view whose rank is `rank`,
// shape at P[sh..sh+8] and strides at P[st..st+8].
fn strided_at(i: u32, rank: u32, sh: u32, st: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var k = i32(rank) - 1; k >= 0; k--) {
        let s = P[sh + u32(k)];
        off += (rem % s) * P[st + u32(k)];
        rem = rem / s;
    }
    return off;
}
