//! Stride-1 3×3 convolutions by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016). Each 2×2 output tile is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A over the 4×4
//! input tile d at its corner, so a tile's 36 multiply-adds per channel
//! pair become 16: one GEMM per transform element ξν, of the transformed
//! weights (og × cg) by the transformed input tiles (cg × tiles). The
//! input and output transforms only add and subtract and the weight
//! transform halves, so the rounding stays at the direct convolution's
//! size (the f32 tests hold it to the same bound against f64).
//!
//! f32 on AVX-512: a vector holds 16 tiles along a tile row. An image's
//! tiles run in chunks whose transformed input and GEMM output stay in L2.
//! `KILN_CPU_WINOGRAD=0` turns the path off (direct GEMM for every conv).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::sgemm::{PANEL, PackedA, View, packed_b_index, packed_b_len, sgemm_packed_b};
use super::{build_rows, with_scratch};
use crate::ops::conv2d::ConvGeom;

/// Transform elements per tile (4×4).
const XI: usize = 16;
/// Tiles per vector.
const LANES: usize = 16;

/// Whether the forward of `g` runs here (the caller checks f32 on
/// AVX-512): 3×3, stride 1, no dilation, ≥ 16 channels per group on both
/// sides (the GEMMs' rows and depth), and output rows ≥ 24 wide, so the
/// 16-tile vectors along a row are at least 3/4 full (a 16-wide map would
/// waste half of every vector).
pub fn applies(g: &ConvGeom) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var_os("KILN_CPU_WINOGRAD").is_none_or(|v| v != "0"));
    enabled
        && (g.kh, g.kw) == (3, 3)
        && g.p.stride == [1, 1]
        && g.p.dilation == [1, 1]
        && g.cg() >= 16
        && g.og() >= 16
        && g.ow >= 24
        && g.oh >= 2
}

/// Tile grid and chunk size of one geometry, and the input columns each
/// vector of tiles loads.
struct Grid {
    /// Tile rows, and tile columns rounded up to whole vectors.
    ty: usize,
    txp: usize,
    /// Tiles per chunk (a multiple of LANES; of PANEL but for the last).
    chunk: usize,
    /// Per vector of tile columns (txp / LANES).
    cols: Vec<ColLoads>,
}

/// The four loads (columns 2i + k, k = 0, 16, 2, 18, for tile i of 16)
/// of one input row for one vector of tile columns: their offsets from
/// the row start (negative in the left padding) and the lanes inside the
/// row; the others read as the padding's zeros.
#[derive(Clone, Copy)]
struct ColLoads {
    off: [isize; 4],
    mask: [__mmask16; 4],
}

impl ColLoads {
    fn new(tx: usize, pw: usize, w: usize) -> ColLoads {
        let mut cl = ColLoads { off: [0; 4], mask: [0; 4] };
        for (i, k) in [0, 16, 2, 18].into_iter().enumerate() {
            let s = (2 * tx + k) as isize - pw as isize;
            let (lo, hi) = ((-s).clamp(0, 16), (w as isize - s).clamp(0, 16));
            cl.off[i] = s;
            cl.mask[i] = if hi > lo { (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16 } else { 0 };
        }
        cl
    }
}

impl Grid {
    fn new(g: &ConvGeom) -> Grid {
        let (ty, txp) = (g.oh.div_ceil(2), g.ow.div_ceil(2).div_ceil(LANES) * LANES);
        // Transformed input plus GEMM output: 64·(cg + og) bytes per tile;
        // about 768 KiB per chunk keeps both in L2. Chunks are whole
        // 48-column panels (the GEMM's register tile) but the last.
        let fit = (12_288 / (g.cg() + g.og())) / PANEL * PANEL;
        let cols = (0..txp).step_by(LANES).map(|tx| ColLoads::new(tx, g.p.padding[1], g.w)).collect();
        Grid { ty, txp, chunk: fit.clamp(PANEL, 192).min(ty * txp), cols }
    }
}

/// The 16 transformed weight matrices U_ξν = (G g Gᵀ)[ξ][ν] (og × cg) of
/// every group, packed for the GEMM.
fn transformed_weights(w: &[f32], g: &ConvGeom) -> Vec<[PackedA; XI]> {
    let (og, cg) = (g.og(), g.cg());
    // G g (rows of g), then the same on the columns: t·Gᵀ.
    let gt = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    (0..g.p.groups)
        .map(|gi| {
            let mut u = vec![0f32; XI * og * cg];
            for o in 0..og {
                for c in 0..cg {
                    let k = &w[((gi * og + o) * cg + c) * 9..][..9];
                    let k = |i: usize, j: usize| k[3 * i + j] as f64;
                    let cols: [[f64; 4]; 3] = std::array::from_fn(|j| gt(k(0, j), k(1, j), k(2, j)));
                    for xi in 0..4 {
                        let row = gt(cols[0][xi], cols[1][xi], cols[2][xi]);
                        for (nu, v) in row.iter().enumerate() {
                            u[((4 * xi + nu) * og + o) * cg + c] = *v as f32;
                        }
                    }
                }
            }
            std::array::from_fn(|e| {
                let view = View { ptr: u[e * og * cg..].as_ptr(), rs: cg, cs: 1 };
                // SAFETY: the view covers matrix e of `u`; the caller checked AVX-512.
                unsafe { PackedA::new(og, cg, view) }
            })
        })
        .collect()
}

/// The forward, one image per task.
///
/// # Safety
/// `applies(g)`, and the CPU has AVX-512 with the f32 GEMM available.
pub unsafe fn forward(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let (og, cg, plane) = (g.og(), g.cg(), g.oh * g.ow);
    let grid = Grid::new(g);
    let u = transformed_weights(w, g);
    let hw = g.h * g.w;
    build_rows(g.n * g.o * plane, g.o * plane, |start, y| {
        let img = start / (g.o * plane);
        // The 16 matrices of each kind one cache line off a multiple of 4 KiB
        // apart: 16 streams 4 KiB apart (24 KiB here) share one L1 set.
        let (stride, mstride) = (packed_b_len(cg, grid.chunk) + LANES, og * grid.chunk + LANES);
        with_scratch([XI * stride, XI * mstride], |v: &mut [f32], m: &mut [f32]| {
            for (gi, u) in u.iter().enumerate() {
                let xg = &x[(img * g.c + gi * cg) * hw..][..cg * hw];
                let y = &mut y[gi * og * plane..][..og * plane];
                for s0 in (0..grid.ty * grid.txp).step_by(grid.chunk) {
                    let n = grid.chunk.min(grid.ty * grid.txp - s0);
                    // SAFETY: AVX-512 is the caller's contract.
                    unsafe { input_tiles(xg, g, &grid, s0, n, v, stride) };
                    for (e, ue) in u.iter().enumerate() {
                        let (b, c) = (v[e * stride..].as_ptr(), m[e * mstride..].as_mut_ptr());
                        // SAFETY: B is packed cg × n inside v, C og × n inside m.
                        unsafe { sgemm_packed_b(ue, n, b, false, c, grid.chunk) };
                    }
                    // SAFETY: as above; the stores are masked to the output.
                    unsafe { output_tiles(m, mstride, g, &grid, s0, n, y) };
                }
            }
        });
    })
}

/// Lane i of the result: lane 2i + `odd` of the 32 values (lo, hi).
#[inline]
#[target_feature(enable = "avx512f")]
fn deinterleave(lo: __m512, hi: __m512, odd: bool) -> __m512 {
    let idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let idx = if odd { _mm512_add_epi32(idx, _mm512_set1_epi32(1)) } else { idx };
    _mm512_permutex2var_ps(lo, idx, hi)
}

/// Bᵀ d B's one-axis step on four values along that axis.
#[inline]
#[target_feature(enable = "avx512f")]
fn bt(d: [__m512; 4]) -> [__m512; 4] {
    [_mm512_sub_ps(d[0], d[2]), _mm512_add_ps(d[1], d[2]), _mm512_sub_ps(d[2], d[1]), _mm512_sub_ps(d[1], d[3])]
}

/// One input row of 16 tiles (columns 2i..2i + 4 of tile i), transformed
/// along the row; `live` false for a padding row.
///
/// # Safety
/// AVX-512; for a live row, `row` is its start and the lanes of `cols`
/// lie inside it.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn row_tiles(row: *const f32, cols: &ColLoads, live: bool) -> [__m512; 4] {
    let load = |i: usize| {
        let mask = if live { cols.mask[i] } else { 0 };
        // SAFETY: only lanes inside the row are read (the caller's).
        unsafe { _mm512_maskz_loadu_ps(mask, row.wrapping_offset(cols.off[i])) }
    };
    let (a0, a1, b0, b1) = (load(0), load(1), load(2), load(3));
    bt([
        deinterleave(a0, a1, false),
        deinterleave(a0, a1, true),
        deinterleave(b0, b1, false),
        deinterleave(b0, b1, true),
    ])
}

/// Tiles s0..s0+n of every channel of `xg` (one image's group, cg × h ×
/// w), transformed: element ξν of tile s0 + t, channel c is element (c, t)
/// of the cg × n matrix at v[ξν·stride..] in the GEMM's packed-B layout
/// (`packed_b_index`).
///
/// # Safety
/// AVX-512; n a multiple of LANES, tiles inside the grid, `v` holds
/// XI·stride with stride ≥ `packed_b_len(cg, n)`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn input_tiles(xg: &[f32], g: &ConvGeom, grid: &Grid, s0: usize, n: usize, v: &mut [f32], stride: usize) {
    let (cg, h, w, ph) = (g.cg(), g.h, g.w, g.p.padding[0] as isize);
    assert!(xg.len() >= cg * h * w && stride >= packed_b_len(cg, n) && v.len() >= XI * stride);
    for c in 0..cg {
        let plane = xg[c * h * w..].as_ptr();
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((s0 + t) / grid.txp, (s0 + t) % grid.txp);
            let cols = &grid.cols[tx / LANES];
            let rows = [0, 1, 2, 3].map(|r| {
                // Input row 2ty + r − ph: padding above and below.
                let iy = (2 * ty + r) as isize - ph;
                let live = iy >= 0 && iy < h as isize;
                // SAFETY: a live row lies in the plane, and `cols` keeps to it.
                unsafe { row_tiles(plane.wrapping_offset(iy * w as isize), cols, live) }
            });
            // 16 lanes at t (a multiple of 16) stay inside one 48-column panel.
            let at = packed_b_index(cg, n, c, t);
            // ν picks the same element of all four rows.
            #[allow(clippy::needless_range_loop)]
            for nu in 0..4 {
                for (xi, val) in bt([rows[0][nu], rows[1][nu], rows[2][nu], rows[3][nu]]).into_iter().enumerate() {
                    // SAFETY: at + 16 ≤ packed_b_len(cg, n) ≤ stride (asserted).
                    unsafe { _mm512_storeu_ps(v.as_mut_ptr().add((4 * xi + nu) * stride + at), val) };
                }
            }
        }
    }
}

/// Aᵀ m A's one-axis step: two values from four.
#[inline]
#[target_feature(enable = "avx512f")]
fn at(m: [__m512; 4]) -> [__m512; 2] {
    [_mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]), _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3])]
}

/// The outputs of tiles s0..s0+n from the GEMMs' m[ξν·step + o·chunk + t]
/// into y (og × oh × ow of one group), masked to the map.
///
/// # Safety
/// AVX-512; as `input_tiles`, with `m` holding XI·step, step ≥ og·chunk.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_tiles(
    m: &[f32],
    step: usize,
    g: &ConvGeom,
    grid: &Grid,
    s0: usize,
    n: usize,
    y: &mut [MaybeUninit<f32>],
) {
    let (og, oh, ow) = (g.og(), g.oh, g.ow);
    assert!(step >= og * grid.chunk && m.len() >= XI * step && y.len() >= og * oh * ow && n <= grid.chunk);
    // Lanes 2i, 2i + 1 of `lo` take lane i of the even and odd outputs (i < 8); `hi` lanes 8..16.
    let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    let first = |k: usize| -> __mmask16 { if k >= 16 { 0xffff } else { (1u16 << k) - 1 } };
    for o in 0..og {
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((s0 + t) / grid.txp, (s0 + t) % grid.txp);
            if 2 * tx >= ow {
                continue;
            }
            // Matrix ξν starts at (4ξ + ν)·step: every read is below XI·step (asserted).
            let base = m[o * grid.chunk + t..].as_ptr();
            let mut cols = [[_mm512_setzero_ps(); 2]; 4];
            for (nu, col) in cols.iter_mut().enumerate() {
                // SAFETY: see above.
                let p = unsafe { base.add(nu * step) };
                // SAFETY: see above.
                let ld = |xi: usize| unsafe { _mm512_loadu_ps(p.add(4 * xi * step)) };
                *col = at([ld(0), ld(1), ld(2), ld(3)]);
            }
            let left = ow - 2 * tx;
            // a picks the same element of all four columns.
            #[allow(clippy::needless_range_loop)]
            for a in 0..2 {
                let oy = 2 * ty + a;
                if oy >= oh {
                    break;
                }
                let [even, odd] = at([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
                let out = y[(o * oh + oy) * ow + 2 * tx..].as_mut_ptr().cast::<f32>();
                // SAFETY: the masks keep the stores to columns < ow of row oy.
                unsafe {
                    _mm512_mask_storeu_ps(out, first(left), _mm512_permutex2var_ps(even, lo, odd));
                    if left > 16 {
                        _mm512_mask_storeu_ps(out.add(16), first(left - 16), _mm512_permutex2var_ps(even, hi, odd));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv2dParams;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The direct convolution in f64, from the same f32 data.
    fn direct(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f64> {
        let (cg, og, [ph, pw]) = (g.cg(), g.og(), g.p.padding);
        let mut y = vec![0.0; g.n * g.o * g.oh * g.ow];
        for n in 0..g.n {
            for o in 0..g.o {
                let gi = o / og;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut s = 0.0;
                        for c in 0..cg {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let (iy, ix) = ((oy + i).wrapping_sub(ph), (ox + j).wrapping_sub(pw));
                                    if iy < g.h && ix < g.w {
                                        let xv = x[((n * g.c + gi * cg + c) * g.h + iy) * g.w + ix] as f64;
                                        s += xv * w[((o * cg + c) * 3 + i) * 3 + j] as f64;
                                    }
                                }
                            }
                        }
                        y[((n * g.o + o) * g.oh + oy) * g.ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_direct_convolution() {
        if !(is_x86_feature_detected!("avx512f") && super::super::sgemm::available()) {
            return;
        }
        // (n, c, h, w, o, padding, groups): dummy tiles (ow 24 and 33: 12
        // and 17 tiles per row in vectors of 16), odd heights, padding 0 and
        // 2 and uneven, groups, and several chunks per image.
        for &(n, c, h, w, o, padding, groups) in &[
            (2, 16, 24, 24, 16, [1, 1], 1),
            (1, 17, 27, 33, 20, [1, 1], 1),
            (2, 32, 30, 26, 32, [0, 2], 2),
            (1, 16, 26, 26, 16, [2, 2], 1),
            (1, 64, 40, 40, 48, [1, 1], 1),
        ] {
            let p = Conv2dParams { padding, groups, ..Default::default() };
            let (oh, ow) = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2);
            let g = ConvGeom { n, c, h, w, o, kh: 3, kw: 3, oh, ow, p };
            assert!(applies(&g), "{g:?}");
            let (x, wt) = (values(n * c * h * w, 1), values(o * (c / groups) * 9, 2));
            // SAFETY: checked above.
            let got = unsafe { forward(&x, &wt, &g) };
            let want = direct(&x, &wt, &g);
            let tol = 1e-6 * (9 * c / groups) as f64;
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((*a as f64 - b).abs() <= tol, "{g:?}: y[{i}] = {a}, want {b}");
            }
        }
    }
}
