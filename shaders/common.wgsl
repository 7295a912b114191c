// Prepended to every kiln shader. Binding 0 is the argument block `P`
// (u32 words, floats bit-cast); inputs follow read-only, outputs read-write.
@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P[i]);
}

// NaN test on the bits: WGSL lets compilers assume floats are never NaN,
// so `x != x` may fold to false (lavapipe's LLVM does exactly that).
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
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

// The 64×64-tile GEMM step shared by matmul and the conv2d passes: the
// caller stages a 64×16 slice of A in gemm_a ([depth][row]) and a 16×64
// slice of B in gemm_b ([depth][col]); each of 256 threads accumulates its
// 4×4 outputs (rows ty + 16i, cols tx + 16j, so stores stay coalesced).
var<workgroup> gemm_a: array<f32, 1024>;
var<workgroup> gemm_b: array<f32, 1024>;

fn gemm_tile_fma(li: u32, acc: ptr<function, array<f32, 16>>) {
    let tx = li % 16u;
    let ty = li / 16u;
    for (var d = 0u; d < 16u; d++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            av[i] = gemm_a[d * 64u + ty + 16u * i];
            bv[i] = gemm_b[d * 64u + tx + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                (*acc)[i * 4u + j] = fma(av[i], bv[j], (*acc)[i * 4u + j]);
            }
        }
    }
}
