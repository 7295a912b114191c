// Batched C = A·B over strided A (batch…, m, k) and B (batch…, k, n): 64×64
// output tiles, 16-deep K slices staged in workgroup memory, 4×4 outputs per
// thread (rows ty + 16i, cols tx + 16j, so stores stay coalesced).
// Tensors are `elem` (f32, or f16 storage); accumulation is f32.
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// P: m, k, n, batch, batch rank, batch shape[8], a batch strides[8], a offset,
//    a row stride, a col stride, b batch strides[8], b offset, b row stride, b col stride
@compute @workgroup_size(256)
fn matmul_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let m = P[0];
    let k = P[1];
    let n = P[2];
    let tiles_m = (m + TM - 1u) / TM;
    let tiles_n = (n + TN - 1u) / TN;
    let g = wg_flat(wid, nwg);
    let tn = g % tiles_n;
    let tm = (g / tiles_n) % tiles_m;
    let z = g / (tiles_n * tiles_m);
    // The grid may overshoot (x is capped at 65535): surplus blocks leave at once.
    if (z >= P[3]) {
        return;
    }
    let oa = P[21] + strided_at(z, P[4], 5u, 13u);
    let ob = P[32] + strided_at(z, P[4], 5u, 24u);
    let rsa = P[22];
    let csa = P[23];
    let rsb = P[33];
    let csb = P[34];
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<f32, 16>;
    for (var t = 0u; t < k; t += TK) {
        for (var e = li; e < TK * TM; e += 256u) {
            // A tile: element (row r, depth d); B tile: (depth d, col q).
            let r = e % TM;
            let d = e / TM;
            let gr = tm * TM + r;
            let gd = t + d;
            gemm_a[d * TM + r] = select(0.0, f32(a[oa + min(gr, m - 1u) * rsa + min(gd, k - 1u) * csa]), gr < m && gd < k);
            let q = e % TN;
            let gq = tn * TN + q;
            gemm_b[d * TN + q] = select(0.0, f32(b[ob + min(gd, k - 1u) * rsb + min(gq, n - 1u) * csb]), gd < k && gq < n);
        }
        workgroupBarrier();
        gemm_tile_fma(li, &acc);
        workgroupBarrier();
    }
    let oc = z * m * n;
    for (var i = 0u; i < 4u; i++) {
        let r = tm * TM + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let q = tn * TN + tx + 16u * j;
            if (r < m && q < n) {
                c[oc + r * n + q] = elem(acc[i * 4u + j]);
            }
        }
    }
}
