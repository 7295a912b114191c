//! conv2d forward, backward-input and backward-weight as im2col + GEMM, one
//! (image, group) per rayon task with a bounded per-task column buffer.
//! conv_transpose2d is conv2d_bwd_input (and its weight gradient is
//! conv2d_bwd_weight with the roles of input and output swapped).

use rayon::prelude::*;

use super::matmul::{Mat, gemm};
use super::{CpuStorage, dense, with_float2};
use crate::ops::conv2d::ConvGeom;
use crate::{Float, Layout, Result};

impl ConvGeom {
    fn cg(&self) -> usize {
        self.c / self.p.groups
    }
    fn og(&self) -> usize {
        self.o / self.p.groups
    }
    /// Rows of the column matrix: Cg·kh·kw.
    fn krows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn ocols(&self) -> usize {
        self.oh * self.ow
    }

    /// For column-matrix row (c, i, j) and output (oy, ox): input (iy, ix),
    /// or None in the zero padding. Calls `f(row, col, input_offset)`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [sh, sw] = self.p.stride;
        let [ph, pw] = self.p.padding;
        let [dh, dw] = self.p.dilation;
        for c in 0..self.cg() {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = (c * self.kh + i) * self.kw + j;
                    for oy in 0..self.oh {
                        let iy = (oy * sh + i * dh) as isize - ph as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let base = (c * self.h + iy as usize) * self.w;
                        for ox in 0..self.ow {
                            let ix = (ox * sw + j * dw) as isize - pw as isize;
                            if ix >= 0 && ix < self.w as isize {
                                f(row, oy * self.ow + ox, base + ix as usize);
                            }
                        }
                    }
                }
            }
        }
    }

    /// cols (krows × ocols) from one group's input planes (Cg × H × W).
    fn im2col<T: Float>(&self, x: &[T], cols: &mut [T]) {
        cols.fill(T::zero());
        let n = self.ocols();
        self.for_each_tap(|r, c, off| cols[r * n + c] = x[off]);
    }

    /// dx (Cg × H × W) += scatter of cols.
    fn col2im<T: Float>(&self, cols: &[T], dx: &mut [T]) {
        let n = self.ocols();
        self.for_each_tap(|r, c, off| dx[off] += cols[r * n + c]);
    }
}

fn fwd_t<T: Float>(x: &[T], lx: &Layout, w: &[T], lw: &Layout, g: ConvGeom) -> Vec<T> {
    let (x, w) = (dense(x, lx), dense(w, lw));
    let (groups, cg, og, kr, oc) = (g.p.groups, g.cg(), g.og(), g.krows(), g.ocols());
    let mut y = vec![T::zero(); g.n * g.o * oc];
    if y.is_empty() || kr == 0 {
        return y;
    }
    y.par_chunks_mut(og * oc).enumerate().for_each(|(task, yg)| {
        let (n, gi) = (task / groups, task % groups);
        let xin = &x[(n * g.c + gi * cg) * g.h * g.w..][..cg * g.h * g.w];
        let mut cols = vec![T::zero(); kr * oc];
        g.im2col(xin, &mut cols);
        let wg = &w[gi * og * kr..][..og * kr];
        gemm([og, kr, oc], Mat::rows(wg, kr), Mat::rows(&cols, oc), T::zero(), yg, oc);
    });
    y
}

fn bwd_input_t<T: Float>(dy: &[T], ldy: &Layout, w: &[T], lw: &Layout, g: ConvGeom) -> Vec<T> {
    let (dy, w) = (dense(dy, ldy), dense(w, lw));
    let (groups, cg, og, kr, oc) = (g.p.groups, g.cg(), g.og(), g.krows(), g.ocols());
    let mut dx = vec![T::zero(); g.n * g.c * g.h * g.w];
    if dx.is_empty() || og * oc == 0 {
        return dx;
    }
    dx.par_chunks_mut(cg * g.h * g.w).enumerate().for_each(|(task, dxg)| {
        let (n, gi) = (task / groups, task % groups);
        let dyg = &dy[(n * g.o + gi * og) * oc..][..og * oc];
        let wg = &w[gi * og * kr..][..og * kr];
        let mut cols = vec![T::zero(); kr * oc];
        // cols = W_gᵀ (kr × og) · dy_g (og × oc)
        gemm([kr, og, oc], Mat::t(wg, kr), Mat::rows(dyg, oc), T::zero(), &mut cols, oc);
        g.col2im(&cols, dxg);
    });
    dx
}

fn bwd_weight_t<T: Float>(x: &[T], lx: &Layout, dy: &[T], ldy: &Layout, g: ConvGeom) -> Vec<T> {
    let (x, dy) = (dense(x, lx), dense(dy, ldy));
    let (groups, cg, og, kr, oc) = (g.p.groups, g.cg(), g.og(), g.krows(), g.ocols());
    let size = g.o * kr;
    // A fixed split of the (image, group) tasks, each summed serially and
    // the partials added in order: the result does not depend on the
    // thread count or on scheduling (resumed runs stay bit-identical).
    let tasks = g.n * groups;
    let per = tasks.div_ceil(REDUCE_SPLITS).max(1);
    let partials: Vec<Vec<T>> = (0..tasks.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut dw = vec![T::zero(); size];
            let mut cols = vec![T::zero(); kr * oc];
            for task in chunk * per..((chunk + 1) * per).min(tasks) {
                let (n, gi) = (task / groups, task % groups);
                let xin = &x[(n * g.c + gi * cg) * g.h * g.w..][..cg * g.h * g.w];
                g.im2col(xin, &mut cols);
                let dyg = &dy[(n * g.o + gi * og) * oc..][..og * oc];
                let dwg = &mut dw[gi * og * kr..][..og * kr];
                // dW_g (og × kr) += dy_g (og × oc) · colsᵀ (oc × kr)
                gemm([og, oc, kr], Mat::rows(dyg, oc), Mat::t(&cols, oc), T::one(), dwg, kr);
            }
            dw
        })
        .collect();
    let mut out = vec![T::zero(); size];
    for p in partials {
        out.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
    }
    out
}

/// Number of independent partial sums in deterministic parallel reductions.
const REDUCE_SPLITS: usize = 8;

pub fn conv2d_fwd(x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, g: ConvGeom) -> Result<CpuStorage> {
    with_float2!("conv2d", x, w, |a, b| fwd_t(a, lx, b, lw, g))
}

pub fn conv2d_bwd_input(dy: &CpuStorage, ldy: &Layout, w: &CpuStorage, lw: &Layout, g: ConvGeom) -> Result<CpuStorage> {
    with_float2!("conv2d_bwd_input", dy, w, |a, b| bwd_input_t(a, ldy, b, lw, g))
}

pub fn conv2d_bwd_weight(
    x: &CpuStorage,
    lx: &Layout,
    dy: &CpuStorage,
    ldy: &Layout,
    g: ConvGeom,
) -> Result<CpuStorage> {
    with_float2!("conv2d_bwd_weight", x, dy, |a, b| bwd_weight_t(a, lx, b, ldy, g))
}
