//! conv2d's input gradient (conv_transpose2d's forward) at stride 2 along
//! rows, without a column matrix. The input positions split into sh·sw
//! phases by (iy mod sh, ix mod sw); each phase is a stride-1 convolution
//! of dy with the sub-kernel of the taps that reach it, run as a GEMM that
//! reads its B rows in place from one zero-padded copy of dy (`Rows`, as
//! the stride-1 forward does). The phases are then interleaved into dx.
//! The col2im path wrote a column matrix kh·kw/(sh·sw) times dx's size
//! (4× for the DCGAN layers) and added it back into a zeroed dx.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::conv2d::stride2::first;
use super::sgemm::{PackedA, Rows, View, sgemm_packed_rows};
use super::{build_rows, with_scratch};
use crate::ops::conv2d::ConvGeom;

/// One phase along one axis: dx index s·q + e (q < len) takes kernel taps
/// i0 + s·a (a < taps) at dy index q + d − a.
#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    pub i0: usize,
    pub taps: usize,
    pub d: usize,
    pub len: usize,
}

/// Phase e of an axis with kernel k, stride s, padding p and dx length n.
pub(super) fn axis(k: usize, s: usize, p: usize, n: usize, e: usize) -> Axis {
    // dx index s·q + e = dy index·s − p + i, so i ≡ e + p (mod s).
    let i0 = (e + p) % s;
    let taps = if k > i0 { (k - i0).div_ceil(s) } else { 0 };
    let len = if n > e { (n - e).div_ceil(s) } else { 0 };
    Axis { i0, taps, d: (e + p - i0) / s, len }
}

/// The phases of a geometry and the padded dy layout their GEMMs read.
pub struct Plan {
    rows: Vec<Axis>,
    cols: [Axis; 2],
    /// Zero rows above dy's and zero columns left of each row.
    top: usize,
    left: usize,
    /// Padded row width and rows per channel.
    wp: usize,
    hp: usize,
}

impl Plan {
    /// The plan, when this path applies: f32 on AVX-512 (the caller's
    /// check), stride 2 along rows, no dilation, every phase with a tap,
    /// phase rows of ≥ 16 outputs (rows of 8 ran 12–20% slower than col2im:
    /// the padded grid's extra column and a 72-column GEMM per image cost
    /// more than the column matrix), reads at most one column past
    /// either end of a dy row (so rows share one zero column), and ≥ 16
    /// channels per group in dx (the GEMM's rows).
    pub fn new(g: &ConvGeom) -> Option<Plan> {
        let ([sh, sw], [ph, pw]) = (g.p.stride, g.p.padding);
        if sw != 2 || g.p.dilation != [1, 1] || g.cg() < 16 || g.oh == 0 || g.ow == 0 {
            return None;
        }
        let rows: Vec<Axis> = (0..sh).map(|e| axis(g.kh, sh, ph, g.h, e)).collect();
        let cols = [axis(g.kw, 2, pw, g.w, 0), axis(g.kw, 2, pw, g.w, 1)];
        if rows.iter().chain(&cols).any(|a| a.taps == 0 || a.len == 0) || cols.iter().any(|a| a.len < 16) {
            return None;
        }
        // Padding so every tap's read lies in the padded copy: dy index
        // q + d − a runs from d − (taps − 1) to len − 1 + d.
        let before = |a: &Axis| (a.taps - 1).saturating_sub(a.d);
        let after = |a: &Axis, n: usize| (a.len - 1 + a.d).saturating_sub(n - 1);
        let top = rows.iter().map(before).max()?;
        let bottom = rows.iter().map(|a| after(a, g.oh)).max()?;
        let (left, right) = (cols.iter().map(before).max()?, cols.iter().map(|a| after(a, g.ow)).max()?);
        if left > 1 || right > 1 {
            return None;
        }
        // One zero column between rows serves as both the right pad of a
        // row and the left pad of the next.
        let wp = g.ow + left.max(right);
        Some(Plan { rows, cols, top, left, wp, hp: top + g.oh + bottom })
    }

    /// B row offsets of phase (ey, ex) in the padded copy: tap (o, a, b).
    fn offsets(&self, og: usize, ey: usize, ex: usize) -> Vec<usize> {
        let (ay, ax, plane) = (self.rows[ey], self.cols[ex], self.hp * self.wp);
        let mut out = Vec::with_capacity(og * ay.taps * ax.taps);
        for o in 0..og {
            for a in 0..ay.taps {
                for b in 0..ax.taps {
                    out.push(o * plane + (ay.d + self.top - a) * self.wp + ax.d + self.left - b);
                }
            }
        }
        out
    }

    /// Floats of the padded copy of one group of dy: its planes plus slack
    /// for the discarded grid columns of the last rows.
    fn padded_len(&self, og: usize) -> usize {
        og * self.hp * self.wp + 2 * self.wp + 16
    }
}

/// conv2d_bwd_input by phases: dx (n, c, h, w) from dy (n, o, oh, ow),
/// dense. The caller has checked f32, AVX-512 and `sgemm::available()`.
pub fn bwd_input(dy: &[f32], w: &[f32], g: &ConvGeom, plan: &Plan) -> Vec<f32> {
    let (groups, og, cg) = (g.p.groups, g.og(), g.cg());
    let (sh, k2) = (g.p.stride[0], g.kh * g.kw);
    let phases: Vec<(usize, usize)> = (0..sh).flat_map(|ey| [(ey, 0), (ey, 1)]).collect();
    // Per group and phase, A[ci][(o, a, b)] = w[gi·og + o][ci][i0y + sh·a][i0x + 2b], packed once.
    let packed: Vec<Vec<PackedA>> = (0..groups)
        .map(|gi| {
            phases
                .iter()
                .map(|&(ey, ex)| {
                    let (ay, ax) = (plan.rows[ey], plan.cols[ex]);
                    let k = og * ay.taps * ax.taps;
                    let mut a = Vec::with_capacity(cg * k);
                    for ci in 0..cg {
                        for o in 0..og {
                            let wk = &w[((gi * og + o) * cg + ci) * k2..][..k2];
                            for ta in 0..ay.taps {
                                for tb in 0..ax.taps {
                                    a.push(wk[(ay.i0 + sh * ta) * g.kw + ax.i0 + 2 * tb]);
                                }
                            }
                        }
                    }
                    // SAFETY: the view is exactly `a` (cg × k); the CPU check is the caller's.
                    unsafe { PackedA::new(cg, k, View { ptr: a.as_ptr(), rs: k, cs: 1 }) }
                })
                .collect()
        })
        .collect();
    let offsets: Vec<Vec<usize>> = phases.iter().map(|&(ey, ex)| plan.offsets(og, ey, ex)).collect();
    let padded_len = plan.padded_len(og);
    for (offs, &(ey, _)) in offsets.iter().zip(&phases) {
        // Every B read (offset + grid column) lies in the padded copy.
        let n = plan.rows[ey].len * plan.wp;
        assert!(offs.iter().all(|&o| o + n <= padded_len));
    }
    let (plane_x, plane_y) = (g.c * g.h * g.w, g.o * g.oh * g.ow);
    let nb = g.n.div_ceil(8 * rayon::current_num_threads()).max(1);
    let grid_max = plan.rows.iter().map(|a| a.len).max().unwrap_or(0) * plan.wp;
    build_rows(g.n * plane_x, nb * plane_x, |start, dxb| {
        let n0 = start / plane_x;
        with_scratch([padded_len, phases.len() * cg * grid_max], |yp: &mut [f32], grids: &mut [f32]| {
            // The pads stay zero: only the dy positions are written below.
            yp.fill(0.0);
            for (img, dxi) in dxb.chunks_exact_mut(plane_x).enumerate() {
                for gi in 0..groups {
                    let dyg = &dy[(n0 + img) * plane_y + gi * og * g.oh * g.ow..][..og * g.oh * g.ow];
                    for (o, src) in dyg.chunks_exact(g.oh * g.ow).enumerate() {
                        for (y, row) in src.chunks_exact(g.ow).enumerate() {
                            let at = o * plan.hp * plan.wp + (y + plan.top) * plan.wp + plan.left;
                            yp[at..at + g.ow].copy_from_slice(row);
                        }
                    }
                    for (pi, &(ey, _)) in phases.iter().enumerate() {
                        let n = plan.rows[ey].len * plan.wp;
                        let c = &mut grids[pi * cg * grid_max..][..cg * n];
                        let b = Rows { ptr: yp.as_ptr(), offsets: &offsets[pi] };
                        // SAFETY: B reads stay in yp (asserted above); c holds cg × n.
                        unsafe { sgemm_packed_rows(&packed[gi][pi], n, b, false, c.as_mut_ptr(), n) };
                    }
                    let dxg = &mut dxi[gi * cg * g.h * g.w..][..cg * g.h * g.w];
                    // SAFETY: the CPU has AVX-512 (the caller's check).
                    unsafe { interleave(plan, g, cg, grid_max, grids, dxg) };
                }
            }
        });
    })
}

/// dx rows from the phase grids: row sh·q + ey, column 2·qx + ex is grid
/// (ey, ex)'s element q·wp + qx. Eight columns of each of the two phases
/// of a row make 16 outputs per permute.
#[target_feature(enable = "avx512f")]
fn interleave(plan: &Plan, g: &ConvGeom, cg: usize, grid_max: usize, grids: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let (sh, w) = (g.p.stride[0], g.w);
    let idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let [c0, c1] = plan.cols;
    for (ey, ay) in plan.rows.iter().enumerate() {
        let n = ay.len * plan.wp;
        let (g0, g1) = (&grids[2 * ey * cg * grid_max..], &grids[(2 * ey + 1) * cg * grid_max..]);
        for ci in 0..cg {
            for q in 0..ay.len {
                let (r0, r1) = (&g0[ci * n + q * plan.wp..][..c0.len], &g1[ci * n + q * plan.wp..][..c1.len]);
                let out = &mut dx[(ci * g.h + sh * q + ey) * w..][..w];
                for x in (0..c0.len).step_by(8) {
                    let (n0, n1) = ((c0.len - x).min(8), c1.len.saturating_sub(x).min(8));
                    // SAFETY: the masked loads read n0 ≤ r0.len() − x and n1 ≤
                    // r1.len() − x floats; the store writes 2x.. of out, n0 + n1
                    // ≤ w − 2x lanes (c0.len + c1.len = w).
                    unsafe {
                        let a = _mm512_maskz_loadu_ps(first(n0), r0.as_ptr().add(x));
                        let b = _mm512_maskz_loadu_ps(first(n1), r1.as_ptr().wrapping_add(x));
                        let v = _mm512_permutex2var_ps(a, idx, b);
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add(2 * x).cast(), first(n0 + n1), v);
                    }
                }
            }
        }
    }
}
