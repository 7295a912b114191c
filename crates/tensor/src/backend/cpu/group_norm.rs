//! group_norm's fused CPU kernels over (N, C, *) with G groups: one pass
//! of per-(sample, group) statistics and one that normalises and applies
//! the per-channel affine; the backward likewise in two passes. A group's
//! C/G·spatial values are contiguous, so each (sample, group) is one
//! task's slice. Sums are in f64.

use rayon::prelude::*;

use super::{CpuStorage, dense};
use crate::error::arg_err;
use crate::{Float, Layout, Result, WithDType};

/// (N, C, M) sizes of an input of shape (N, C, spatial...).
fn ncm(l: &Layout) -> (usize, usize, usize) {
    let s = l.shape();
    (s[0], s[1], s[2..].iter().product())
}

fn fwd_t<T: Float>(
    x: &[T],
    (n, c, m): (usize, usize, usize),
    groups: usize,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let cpg = c / groups;
    let len = cpg * m;
    let stats: Vec<(f64, f64)> = x
        .par_chunks(len)
        .map(|g| {
            // Shifted by the group's first value, so Σd² − (Σd)²/n does not cancel.
            let shift = WithDType::to_f64(g[0]);
            let (sd, sq) = super::simd(
                #[inline(always)]
                || {
                    lane_sums(g, |v| {
                        let d = WithDType::to_f64(v) - shift;
                        (d, d * d)
                    })
                },
            );
            let var = ((sq - sd * sd / len as f64) / len as f64).max(0.0);
            (shift + sd / len as f64, 1.0 / (var + eps).sqrt())
        })
        .collect();
    // Written once, never zero-filled first.
    let y = super::build_rows(n * c * m, len, |start, yg| {
        let ng = start / len;
        let (mean, rstd) = stats[ng];
        let g = ng % groups;
        let xg = &x[start..start + len];
        for k in 0..cpg {
            let ch = g * cpg + k;
            let scale = rstd * w.map_or(1.0, |w| WithDType::to_f64(w[ch]));
            let shift = b.map_or(0.0, |b| WithDType::to_f64(b[ch])) - mean * scale;
            let (scale, shift) = (<T as WithDType>::from_f64(scale), <T as WithDType>::from_f64(shift));
            super::simd(
                #[inline(always)]
                || {
                    for (o, &v) in yg[k * m..(k + 1) * m].iter_mut().zip(&xg[k * m..(k + 1) * m]) {
                        o.write(v * scale + shift);
                    }
                },
            );
        }
    });
    let mean = stats.iter().map(|s| <T as WithDType>::from_f64(s.0)).collect();
    let rstd = stats.iter().map(|s| <T as WithDType>::from_f64(s.1)).collect();
    (y, mean, rstd)
}

/// dx, dw (C), db (C) from dy, with x̂ = (x − mean)·rstd per group:
/// dx = rstd·(dy·w − mean(dy·w) − x̂·mean(dy·w·x̂)) over the group.
#[allow(clippy::too_many_arguments)]
fn bwd_t<T: Float>(
    x: &[T],
    dy: &[T],
    (n, c, m): (usize, usize, usize),
    groups: usize,
    mean: &[T],
    rstd: &[T],
    w: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let cpg = c / groups;
    let len = cpg * m;
    let mut dx = vec![T::zero(); n * c * m];
    // Per (sample, channel): (Σ dy·x̂, Σ dy), reduced over samples after.
    let mut partial = vec![(0.0f64, 0.0f64); n * c];
    dx.par_chunks_mut(len)
        .zip(partial.par_chunks_mut(cpg))
        .zip(x.par_chunks(len).zip(dy.par_chunks(len)))
        .enumerate()
        .for_each(|(ng, ((dxg, pg), (xg, dyg)))| {
            let (mu, r) = (WithDType::to_f64(mean[ng]), WithDType::to_f64(rstd[ng]));
            let g = ng % groups;
            let (mut s1, mut s2) = (0.0, 0.0);
            for k in 0..cpg {
                let wk = w.map_or(1.0, |w| WithDType::to_f64(w[g * cpg + k]));
                let rows = (&xg[k * m..(k + 1) * m], &dyg[k * m..(k + 1) * m]);
                let (a, bsum) = super::simd(
                    #[inline(always)]
                    || {
                        lane_sums2(rows.0, rows.1, |xv, d| {
                            let d = WithDType::to_f64(d);
                            (d * (WithDType::to_f64(xv) - mu) * r, d)
                        })
                    },
                );
                pg[k] = (a, bsum);
                s1 += wk * bsum;
                s2 += wk * a;
            }
            let (s1, s2) = (s1 / len as f64, s2 / len as f64);
            for k in 0..cpg {
                let wk = w.map_or(1.0, |w| WithDType::to_f64(w[g * cpg + k]));
                // dx = r·(wk·dy − s1 − (x − μ)·r·s2) = α·dy + β·x + γ.
                let (alpha, beta) = (<T as WithDType>::from_f64(r * wk), <T as WithDType>::from_f64(-r * r * s2));
                let gamma = <T as WithDType>::from_f64(-r * s1 + r * r * s2 * mu);
                super::simd(
                    #[inline(always)]
                    || {
                        let rows = xg[k * m..(k + 1) * m].iter().zip(&dyg[k * m..(k + 1) * m]);
                        for (o, (&xv, &d)) in dxg[k * m..(k + 1) * m].iter_mut().zip(rows) {
                            *o = alpha * d + beta * xv + gamma;
                        }
                    },
                );
            }
        });
    let mut dw = vec![T::zero(); c];
    let mut db = vec![T::zero(); c];
    for ch in 0..c {
        let (a, bsum) = (0..n).fold((0.0, 0.0), |(a, bs), i| (a + partial[i * c + ch].0, bs + partial[i * c + ch].1));
        dw[ch] = <T as WithDType>::from_f64(a);
        db[ch] = <T as WithDType>::from_f64(bsum);
    }
    (dx, dw, db)
}

/// (Σ u, Σ v) of f(value) = (u, v) over a slice, in 8 f64 lanes so the
/// loop vectorises (a single running sum is a serial chain).
#[inline(always)]
fn lane_sums<T: Float>(g: &[T], f: impl Fn(T) -> (f64, f64)) -> (f64, f64) {
    let (mut su, mut sv) = ([0.0f64; 8], [0.0f64; 8]);
    let chunks = g.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            let (u, v) = f(c[j]);
            su[j] += u;
            sv[j] += v;
        }
    }
    let (mut u, mut v) = (su.iter().sum::<f64>(), sv.iter().sum::<f64>());
    for &x in rest {
        let (a, b) = f(x);
        u += a;
        v += b;
    }
    (u, v)
}

/// `lane_sums` over two slices of one length, f(p[j], q[j]).
#[inline(always)]
fn lane_sums2<T: Float>(p: &[T], q: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    let (mut su, mut sv) = ([0.0f64; 8], [0.0f64; 8]);
    let (cp, cq) = (p.chunks_exact(8), q.chunks_exact(8));
    let (rp, rq) = (cp.remainder(), cq.remainder());
    for (a, b) in cp.zip(cq) {
        for j in 0..8 {
            let (u, v) = f(a[j], b[j]);
            su[j] += u;
            sv[j] += v;
        }
    }
    let (mut u, mut v) = (su.iter().sum::<f64>(), sv.iter().sum::<f64>());
    for (&a, &b) in rp.iter().zip(rq) {
        let (x, y) = f(a, b);
        u += x;
        v += y;
    }
    (u, v)
}

fn check(x: &Layout, groups: usize) -> Result<(usize, usize, usize)> {
    let (n, c, m) = ncm(x);
    if x.rank() < 2 || groups == 0 || c % groups != 0 {
        return Err(arg_err("group_norm", format!("groups = {groups} must divide the channels of {:?}", x.shape())));
    }
    Ok((n, c, m))
}

fn wrong(s: &CpuStorage) -> crate::Error {
    arg_err("group_norm", format!("needs f32 or f64 operands of one dtype, got {:?}", s.dtype()))
}

/// The typed slice of an optional per-channel operand of x's dtype.
fn opt<'a, T: 'a>(
    s: Option<&'a CpuStorage>,
    get: impl Fn(&'a CpuStorage) -> Option<&'a [T]>,
) -> Result<Option<&'a [T]>> {
    s.map(|s| get(s).ok_or_else(|| wrong(s))).transpose()
}

fn f32s(s: &CpuStorage) -> Option<&[f32]> {
    if let CpuStorage::F32(v) = s { Some(v) } else { None }
}

fn f64s(s: &CpuStorage) -> Option<&[f64]> {
    if let CpuStorage::F64(v) = s { Some(v) } else { None }
}

/// (y, mean (N·G), rstd (N·G)) of group_norm over x with weight and bias (C).
pub fn group_norm_fwd(
    x: &CpuStorage,
    l: &Layout,
    groups: usize,
    w: Option<&CpuStorage>,
    b: Option<&CpuStorage>,
    eps: f64,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    let dims = check(l, groups)?;
    match x {
        CpuStorage::F32(v) => {
            let (y, m, r) = fwd_t(&dense(v, l), dims, groups, opt(w, f32s)?, opt(b, f32s)?, eps);
            Ok((CpuStorage::F32(y), CpuStorage::F32(m), CpuStorage::F32(r)))
        }
        CpuStorage::F64(v) => {
            let (y, m, r) = fwd_t(&dense(v, l), dims, groups, opt(w, f64s)?, opt(b, f64s)?, eps);
            Ok((CpuStorage::F64(y), CpuStorage::F64(m), CpuStorage::F64(r)))
        }
        other => Err(wrong(other)),
    }
}

/// (dx, dw (C), db (C)) of group_norm from dy and the saved statistics.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_bwd(
    x: &CpuStorage,
    lx: &Layout,
    dy: &CpuStorage,
    ldy: &Layout,
    groups: usize,
    mean: &CpuStorage,
    rstd: &CpuStorage,
    w: Option<&CpuStorage>,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    let dims = check(lx, groups)?;
    match (x, dy, mean, rstd) {
        (CpuStorage::F32(x), CpuStorage::F32(d), CpuStorage::F32(m), CpuStorage::F32(r)) => {
            let (a, b, c) = bwd_t(&dense(x, lx), &dense(d, ldy), dims, groups, m, r, opt(w, f32s)?);
            Ok((CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)))
        }
        (CpuStorage::F64(x), CpuStorage::F64(d), CpuStorage::F64(m), CpuStorage::F64(r)) => {
            let (a, b, c) = bwd_t(&dense(x, lx), &dense(d, ldy), dims, groups, m, r, opt(w, f64s)?);
            Ok((CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)))
        }
        _ => Err(wrong(dy)),
    }
}
