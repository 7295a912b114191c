//! avg_pool2d (forward and its adjoint) and max_pool2d's argmax, one
//! (image, channel) plane per rayon task.

use rayon::prelude::*;

use super::{CpuStorage, dense, with_float};
use crate::ops::pool::PoolGeom;
use crate::{Float, Layout, Result};

/// Window of output (oy, ox): the rows/cols it covers, clipped to the input,
/// and PyTorch's divisor (with or without the padding counted).
fn avg_window(g: &PoolGeom, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
    let span = |o: usize, s: usize, p: usize, k: usize, len: usize| {
        let start = (o * s) as isize - p as isize;
        let end_padded = (start + k as isize).min((len + p) as isize);
        let padded = (end_padded - start) as usize;
        let (lo, hi) = (start.max(0) as usize, end_padded.min(len as isize) as usize);
        (lo..hi, padded)
    };
    let (rows, ph) = span(oy, g.stride[0], g.padding[0], g.kernel[0], g.h);
    let (cols, pw) = span(ox, g.stride[1], g.padding[1], g.kernel[1], g.w);
    let div = if g.count_include_pad { ph * pw } else { rows.len() * cols.len() };
    (rows, cols, div)
}

fn avg_fwd_t<T: Float>(x: &[T], l: &Layout, g: PoolGeom) -> Vec<T> {
    let x = dense(x, l);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![T::zero(); g.planes * ohw];
    y.par_chunks_mut(ohw.max(1)).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * hw..][..hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (rows, cols, div) = avg_window(&g, oy, ox);
                let mut s = T::zero();
                for iy in rows {
                    for ix in cols.clone() {
                        s += xp[iy * g.w + ix];
                    }
                }
                yp[oy * g.ow + ox] = s / T::from_f64(div as f64);
            }
        }
    });
    y
}

fn avg_bwd_t<T: Float>(dy: &[T], l: &Layout, g: PoolGeom) -> Vec<T> {
    let dy = dense(dy, l);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = vec![T::zero(); g.planes * hw];
    dx.par_chunks_mut(hw.max(1)).enumerate().for_each(|(p, dxp)| {
        let dyp = &dy[p * ohw..][..ohw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (rows, cols, div) = avg_window(&g, oy, ox);
                let v = dyp[oy * g.ow + ox] / T::from_f64(div as f64);
                for iy in rows {
                    for ix in cols.clone() {
                        dxp[iy * g.w + ix] += v;
                    }
                }
            }
        }
    });
    dx
}

fn max_idx_t<T: Float>(x: &[T], l: &Layout, g: PoolGeom) -> Vec<i64> {
    let x = dense(x, l);
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut idx = vec![0i64; g.planes * ohw];
    idx.par_chunks_mut(ohw.max(1)).enumerate().for_each(|(p, ip)| {
        let xp = &x[p * hw..][..hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut best: Option<(usize, T)> = None;
                for i in 0..g.kernel[0] {
                    let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for j in 0..g.kernel[1] {
                        let ix = (ox * g.stride[1] + j * g.dilation[1]) as isize - g.padding[1] as isize;
                        if ix < 0 || ix >= g.w as isize {
                            continue;
                        }
                        let at = iy as usize * g.w + ix as usize;
                        let v = xp[at];
                        // First maximum wins; NaN propagates (as in PyTorch).
                        let better = match best {
                            None => true,
                            Some((_, b)) => !b.is_nan() && (v > b || v.is_nan()),
                        };
                        if better {
                            best = Some((at, v));
                        }
                    }
                }
                ip[oy * g.ow + ox] = best.map_or(0, |(at, _)| at as i64);
            }
        }
    });
    idx
}

pub fn avg_pool2d_fwd(x: &CpuStorage, l: &Layout, g: PoolGeom) -> Result<CpuStorage> {
    with_float!("avg_pool2d", x, |v| avg_fwd_t(v, l, g))
}

pub fn avg_pool2d_bwd(dy: &CpuStorage, l: &Layout, g: PoolGeom) -> Result<CpuStorage> {
    with_float!("avg_pool2d_bwd", dy, |v| avg_bwd_t(v, l, g))
}

/// Index of each window's maximum within its H·W plane (PyTorch's
/// `return_indices` convention).
pub fn max_pool2d_indices(x: &CpuStorage, l: &Layout, g: PoolGeom) -> Result<CpuStorage> {
    match x {
        CpuStorage::F32(v) => Ok(CpuStorage::I64(max_idx_t(v, l, g))),
        CpuStorage::F64(v) => Ok(CpuStorage::I64(max_idx_t(v, l, g))),
        other => {
            Err(crate::Error::UnsupportedDType { op: "max_pool2d", dtype: other.dtype(), device: crate::Device::Cpu })
        }
    }
}
