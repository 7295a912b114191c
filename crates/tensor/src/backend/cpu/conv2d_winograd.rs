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
//! f32 on AVX-512: a vector holds 16 tiles along a tile row (8 of two
//! rows on maps 11–16 wide). An image's tiles run in chunks whose
//! transformed input and GEMM output stay in L2.
//! `KILN_CPU_WINOGRAD=0` turns the path off (direct GEMM for every conv).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::conv2d::stride2::first;
use super::sgemm::{PANEL, PackedA, View, packed_b_index, packed_b_len, sgemm, sgemm_packed_b};
use super::{build_rows, with_scratch};
use crate::ops::conv2d::ConvGeom;

/// Transform elements per tile (4×4).
const XI: usize = 16;
/// Tiles per vector.
const LANES: usize = 16;

/// Whether the forward of `g` runs here (the caller checks f32 on
/// AVX-512): 3×3, stride 1, no dilation, ≥ 16 channels per group on both
/// sides (the GEMMs' rows and depth), and vectors at least 3/4 full:
/// output rows ≥ 23 wide (16 tiles of a row per vector) or 11–16 wide (8
/// tiles of two rows).
pub fn applies(g: &ConvGeom) -> bool {
    enabled()
        && (g.kh, g.kw) == (3, 3)
        && g.p.stride == [1, 1]
        && g.p.dilation == [1, 1]
        && g.cg() >= 16
        && g.og() >= 16
        && (g.ow >= 23 || (11..=16).contains(&g.ow))
}

/// Whether the Winograd paths are on: `KILN_CPU_WINOGRAD=0` turns them off.
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("KILN_CPU_WINOGRAD").is_none_or(|v| v != "0"))
}

/// Tile grid and chunk size of one geometry, and the input columns each
/// vector of tiles loads.
struct Grid {
    /// Tile rows and columns, rounded up to whole vectors.
    ty: usize,
    txp: usize,
    /// Where lanes 8..16 of a vector sit, in tiles from lanes 0..8: 8
    /// columns on (a row of ≥ 16 tiles), or one row down (rows of 8).
    hi: (usize, usize),
    /// Tiles per chunk (a multiple of LANES; of PANEL but for the last).
    chunk: usize,
    /// Per vector of tile columns (txp / LANES).
    cols: Vec<ColLoads>,
}

/// The four 16-float loads of one input row for one vector of tiles
/// (columns 2i..2i + 4 of tile i: loads at columns k and k + 2 for lanes
/// 0..8 and for lanes 8..16): their row below the first (0, or 2 when
/// lanes 8..16 are the next tile row), column offsets from the row start
/// (negative in the left padding) and the lanes inside the row; the
/// others read as the padding's zeros.
#[derive(Clone, Copy)]
struct ColLoads {
    drow: [usize; 4],
    off: [isize; 4],
    mask: [__mmask16; 4],
}

impl ColLoads {
    fn new(tx: usize, (hty, htx): (usize, usize), pw: usize, w: usize) -> ColLoads {
        let mut cl = ColLoads { drow: [0, 2 * hty, 0, 2 * hty], off: [0; 4], mask: [0; 4] };
        for (i, k) in [0, 2 * htx, 2, 2 * htx + 2].into_iter().enumerate() {
            let s = (2 * tx + k) as isize - pw as isize;
            // Lanes lo..hi lie inside the row.
            let (lo, hi) = ((-s).clamp(0, 16) as usize, (w as isize - s).clamp(0, 16) as usize);
            cl.off[i] = s;
            cl.mask[i] = first(hi) & !first(lo);
        }
        cl
    }
}

impl Grid {
    fn new(g: &ConvGeom) -> Grid {
        let (ty, tx) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        // Rows of up to 8 tiles go two to a vector (an even number of rows).
        let (ty, txp, hi) =
            if tx <= 8 { (ty.next_multiple_of(2), 8, (1, 0)) } else { (ty, tx.next_multiple_of(LANES), (0, 8)) };
        // Transformed input plus GEMM output: 64·(cg + og) bytes per tile;
        // about 768 KiB per chunk keeps both in L2. Chunks are whole
        // 48-column panels (the GEMM's register tile) but the last.
        let fit = (12_288 / (g.cg() + g.og())) / PANEL * PANEL;
        let cols = (0..txp).step_by(LANES).map(|tx| ColLoads::new(tx, hi, g.p.padding[1], g.w)).collect();
        Grid { ty, txp, hi, chunk: fit.clamp(PANEL, 192).min(ty * txp), cols }
    }

    /// Each chunk's first tile and tile count.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let tiles = self.ty * self.txp;
        (0..tiles).step_by(self.chunk).map(move |s0| (s0, self.chunk.min(tiles - s0)))
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
                for (s0, n) in grid.chunks() {
                    // SAFETY: AVX-512 is the caller's contract.
                    unsafe { input_tiles(xg, g, &grid, s0, n, v, stride, Layout::PackedB) };
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

/// Input row iy (and iy + 2 for a vector of two tile rows) of plane
/// `plane` (h × w) for one vector of 16 tiles (columns 2i..2i + 4 of
/// tile i), transformed along the row; rows outside the plane read as the
/// padding's zeros.
///
/// # Safety
/// AVX-512; `plane` holds h·w floats and the lanes of `cols` lie inside
/// a row.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn row_tiles(plane: *const f32, iy: isize, (h, w): (usize, usize), cols: &ColLoads) -> [__m512; 4] {
    let load = |i: usize| {
        let row = iy + cols.drow[i] as isize;
        let mask = if row >= 0 && row < h as isize { cols.mask[i] } else { 0 };
        // SAFETY: only lanes inside a row of the plane are read (the caller's).
        unsafe { _mm512_maskz_loadu_ps(mask, plane.wrapping_offset(row * w as isize + cols.off[i])) }
    };
    let (a0, a1, b0, b1) = (load(0), load(1), load(2), load(3));
    bt([
        deinterleave(a0, a1, false),
        deinterleave(a0, a1, true),
        deinterleave(b0, b1, false),
        deinterleave(b0, b1, true),
    ])
}

/// How `input_tiles` lays out each transformed cg × n matrix.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// The GEMM's packed-B layout (`packed_b_index`): the forward's B.
    PackedB,
    /// Row-major, rows `grid.chunk` long: the weight gradient's Bᵀ.
    Rows,
}

/// Tiles s0..s0+n of every channel of `xg` (one image's group, cg × h ×
/// w), transformed: element ξν of tile s0 + t, channel c is element (c, t)
/// of the cg × n matrix at v[ξν·stride..], laid out as `layout`.
///
/// # Safety
/// AVX-512; n a multiple of LANES, tiles inside the grid, `v` holds
/// XI·stride with stride ≥ `packed_b_len(cg, n)` (PackedB) or cg·chunk (Rows).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn input_tiles(
    xg: &[f32],
    g: &ConvGeom,
    grid: &Grid,
    s0: usize,
    n: usize,
    v: &mut [f32],
    stride: usize,
    layout: Layout,
) {
    let (cg, h, w, ph) = (g.cg(), g.h, g.w, g.p.padding[0] as isize);
    let len = if layout == Layout::PackedB { packed_b_len(cg, n) } else { cg * grid.chunk };
    assert!(xg.len() >= cg * h * w && stride >= len && v.len() >= XI * stride && n <= grid.chunk);
    for c in 0..cg {
        let plane = xg[c * h * w..].as_ptr();
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((s0 + t) / grid.txp, (s0 + t) % grid.txp);
            let cols = &grid.cols[tx / LANES];
            // Input rows 2ty + r − ph, r < 4.
            // SAFETY: `cols` keeps to a row, `row_tiles` to the plane's rows.
            let rows = [0, 1, 2, 3].map(|r| unsafe { row_tiles(plane, (2 * ty + r) as isize - ph, (h, w), cols) });
            // 16 lanes at t (a multiple of 16) stay inside one 48-column panel.
            let at = if layout == Layout::PackedB { packed_b_index(cg, n, c, t) } else { c * grid.chunk + t };
            // ν picks the same element of all four rows.
            #[allow(clippy::needless_range_loop)]
            for nu in 0..4 {
                for (xi, val) in bt([rows[0][nu], rows[1][nu], rows[2][nu], rows[3][nu]]).into_iter().enumerate() {
                    // SAFETY: at + 16 ≤ len ≤ stride (asserted).
                    unsafe { _mm512_storeu_ps(v.as_mut_ptr().add((4 * xi + nu) * stride + at), val) };
                }
            }
        }
    }
}

/// The weight gradient: with U = G g Gᵀ, ∂L/∂U_ξν = Σ over tiles of
/// (A dy Aᵀ)_ξν ⊙ (Bᵀ d B)_ξν, one GEMM per ξν (og × tiles by tiles × cg,
/// deep), and ∂L/∂g = Gᵀ (∂L/∂U) G. The images split into a fixed number
/// of ranges summed in a fixed order, so the result does not depend on
/// the thread count.
///
/// # Safety
/// As `forward`.
pub unsafe fn weight_grad(x: &[f32], dy: &[f32], g: &ConvGeom) -> Vec<f32> {
    use rayon::prelude::*;
    let (og, cg, groups, hw) = (g.og(), g.cg(), g.p.groups, g.h * g.w);
    let grid = Grid::new(g);
    let size = groups * XI * og * cg;
    let (vstride, mstride) = (cg * grid.chunk + LANES, og * grid.chunk + LANES);
    let per = g.n.div_ceil(WEIGHT_SPLITS).max(1);
    let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(per))
        .into_par_iter()
        .map(|split| {
            let mut du = vec![0f32; size];
            with_scratch([XI * vstride, XI * mstride], |v: &mut [f32], m: &mut [f32]| {
                for img in split * per..((split + 1) * per).min(g.n) {
                    for gi in 0..groups {
                        let xg = &x[(img * g.c + gi * cg) * hw..][..cg * hw];
                        let dyg = &dy[(img * g.o + gi * og) * g.oh * g.ow..][..og * g.oh * g.ow];
                        for (s0, n) in grid.chunks() {
                            // SAFETY: AVX-512 is the caller's contract.
                            unsafe {
                                input_tiles(xg, g, &grid, s0, n, v, vstride, Layout::Rows);
                                output_grad_tiles(dyg, g, &grid, s0, n, m, mstride);
                            }
                            for e in 0..XI {
                                // ∂U_ξν (og × cg) += M_ξν (og × n) · V_ξνᵀ (n × cg)
                                let a = View { ptr: m[e * mstride..].as_ptr(), rs: grid.chunk, cs: 1 };
                                let b = View { ptr: v[e * vstride..].as_ptr(), rs: 1, cs: grid.chunk };
                                let c = du[(gi * XI + e) * og * cg..].as_mut_ptr();
                                // SAFETY: the views cover the chunk's matrices, C is og × cg in du.
                                unsafe { sgemm([og, n, cg], a, b, true, c, cg) };
                            }
                        }
                    }
                }
            });
            du
        })
        .collect();
    // Gᵀ (Σ partials) G per (o, c), the partials in their fixed order.
    let gt = |a: f64, b: f64, c: f64, d: f64| [a + (b + c) / 2.0, (b - c) / 2.0, (b + c) / 2.0 + d];
    let mut dw = vec![0f32; g.o * cg * 9];
    for gi in 0..groups {
        for o in 0..og {
            for c in 0..cg {
                let du = |e: usize| {
                    let at = ((gi * XI + e) * og + o) * cg + c;
                    partials.iter().fold(0f32, |s, p| s + p[at]) as f64
                };
                let rows: [[f64; 3]; 4] =
                    std::array::from_fn(|xi| gt(du(4 * xi), du(4 * xi + 1), du(4 * xi + 2), du(4 * xi + 3)));
                for j in 0..3 {
                    let col = gt(rows[0][j], rows[1][j], rows[2][j], rows[3][j]);
                    for (i, val) in col.iter().enumerate() {
                        dw[(((gi * og + o) * cg + c) * 3 + i) * 3 + j] = *val as f32;
                    }
                }
            }
        }
    }
    dw
}

/// Fixed image ranges of the weight gradient (its partial sums).
const WEIGHT_SPLITS: usize = 8;

/// A dy Aᵀ's one-axis step: four values from two (the transpose of `at`).
#[inline]
#[target_feature(enable = "avx512f")]
fn a_step(y0: __m512, y1: __m512) -> [__m512; 4] {
    [y0, _mm512_add_ps(y0, y1), _mm512_sub_ps(y0, y1), _mm512_sub_ps(_mm512_setzero_ps(), y1)]
}

/// Tiles s0..s0+n of dy (one image's group, og × oh × ow), transformed:
/// element ξν of tile s0 + t, channel o at m[ξν·stride + o·chunk + t]
/// (outputs past the map read as zero).
///
/// # Safety
/// AVX-512; n a multiple of LANES, tiles inside the grid, `m` holds
/// XI·stride with stride ≥ og·chunk.
#[target_feature(enable = "avx512f")]
unsafe fn output_grad_tiles(dyg: &[f32], g: &ConvGeom, grid: &Grid, s0: usize, n: usize, m: &mut [f32], stride: usize) {
    let (og, oh, ow) = (g.og(), g.oh, g.ow);
    assert!(dyg.len() >= og * oh * ow && stride >= og * grid.chunk && m.len() >= XI * stride && n <= grid.chunk);
    for o in 0..og {
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((s0 + t) / grid.txp, (s0 + t) % grid.txp);
            // 16 outputs of row oy from column x (lanes past the map read as zero).
            let load = |oy: usize, x: usize| {
                if oy >= oh || x >= ow {
                    return _mm512_setzero_ps();
                }
                // SAFETY: the mask keeps the read to columns < ow of row oy.
                unsafe { _mm512_maskz_loadu_ps(first(ow - x), dyg[(o * oh + oy) * ow + x..].as_ptr()) }
            };
            // Per output row of the tiles: even and odd columns.
            let mut rows = [[_mm512_setzero_ps(); 4]; 2];
            for (a, row) in rows.iter_mut().enumerate() {
                let oy = 2 * ty + a;
                let (lo, hi) = (load(oy, 2 * tx), load(oy + 2 * grid.hi.0, 2 * (tx + grid.hi.1)));
                *row = a_step(deinterleave(lo, hi, false), deinterleave(lo, hi, true));
            }
            // ν picks the same element of both rows.
            #[allow(clippy::needless_range_loop)]
            for nu in 0..4 {
                for (xi, val) in a_step(rows[0][nu], rows[1][nu]).into_iter().enumerate() {
                    // SAFETY: (4ξ + ν)·stride + o·chunk + t + 16 ≤ XI·stride (asserted).
                    unsafe { _mm512_storeu_ps(m.as_mut_ptr().add((4 * xi + nu) * stride + o * grid.chunk + t), val) };
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
    for o in 0..og {
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((s0 + t) / grid.txp, (s0 + t) % grid.txp);
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
            // 16 outputs of row oy from column x, masked to the map.
            let mut store = |oy: usize, x: usize, val: __m512| {
                if oy < oh && x < ow {
                    let out = y[(o * oh + oy) * ow + x..].as_mut_ptr().cast::<f32>();
                    // SAFETY: the mask keeps the store to columns < ow of row oy.
                    unsafe { _mm512_mask_storeu_ps(out, first(ow - x), val) };
                }
            };
            // a picks the same element of all four columns.
            #[allow(clippy::needless_range_loop)]
            for a in 0..2 {
                let oy = 2 * ty + a;
                let [even, odd] = at([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
                store(oy, 2 * tx, _mm512_permutex2var_ps(even, lo, odd));
                store(oy + 2 * grid.hi.0, 2 * (tx + grid.hi.1), _mm512_permutex2var_ps(even, hi, odd));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv2d_winograd2::tests::{direct, direct_weight_grad};
    use super::super::sgemm::tests::values;
    use super::*;
    use crate::Conv2dParams;

    fn geometries() -> Vec<ConvGeom> {
        // (n, c, h, w, o, padding, groups): dummy tiles (ow 24 and 33: 12
        // and 17 tiles per row in vectors of 16), odd heights, padding 0 and
        // 2 and uneven, groups, several chunks per image, more images than
        // weight-gradient splits.
        [
            (2, 16, 24, 24, 16, [1, 1], 1),
            (1, 17, 27, 33, 20, [1, 1], 1),
            (2, 32, 30, 26, 32, [0, 2], 2),
            (1, 16, 26, 26, 16, [2, 2], 1),
            (1, 64, 40, 40, 48, [1, 1], 1),
            (11, 16, 25, 24, 16, [1, 1], 1),
            // 80 tile columns: chunks (192, 96) end inside a tile row.
            (1, 16, 5, 150, 16, [1, 1], 1),
            (1, 64, 7, 150, 64, [1, 1], 1),
            // More channels than one GEMM depth block (KC = 256).
            (1, 272, 6, 24, 16, [1, 1], 1),
            // Rows of 8 tiles or fewer: two tile rows per vector (odd tile
            // row counts, 7 tiles of 13 outputs, padding 0 and 2).
            (3, 16, 16, 16, 24, [1, 1], 1),
            (2, 20, 15, 13, 16, [1, 1], 1),
            (2, 32, 13, 18, 32, [0, 0], 2),
            (1, 16, 14, 12, 16, [2, 2], 1),
            // One output row.
            (2, 16, 1, 30, 16, [1, 1], 1),
        ]
        .into_iter()
        .map(|(n, c, h, w, o, padding, groups)| {
            let p = Conv2dParams { padding, groups, ..Default::default() };
            let (oh, ow) = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2);
            ConvGeom { n, c, h, w, o, kh: 3, kw: 3, oh, ow, p }
        })
        .collect()
    }

    #[test]
    fn forward_and_weight_grad_match_the_direct_sums() {
        if !(is_x86_feature_detected!("avx512f") && super::super::sgemm::available()) {
            return;
        }
        let close = |what: &str, g: &ConvGeom, got: &[f32], want: &[f64], tol: f64| {
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!((*a as f64 - b).abs() <= tol, "{g:?}: {what}[{i}] = {a}, want {b}");
            }
        };
        for g in geometries() {
            assert!(applies(&g), "{g:?}");
            let (x, wt) = (values(g.n * g.c * g.h * g.w, 1), values(g.o * g.cg() * 9, 2));
            // SAFETY: checked above.
            let y = unsafe { forward(&x, &wt, &g) };
            close("y", &g, &y, &direct(&x, &wt, &g), 1e-6 * (9 * g.cg()) as f64);
            let dy = values(g.n * g.o * g.oh * g.ow, 4);
            // SAFETY: checked above.
            let dw = unsafe { weight_grad(&x, &dy, &g) };
            close("dw", &g, &dw, &direct_weight_grad(&x, &dy, &g), 1e-6 * (g.n * g.oh * g.ow) as f64);
        }
    }
}
