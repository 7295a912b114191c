//! softmax / log_softmax along one dim, max-subtracted for stability.

use rayon::prelude::*;

use super::{CpuStorage, dense, with_float};
use crate::{Float, Layout, Result};

fn softmax_t<T: Float>(v: &[T], l: &Layout, dim: usize, log: bool) -> Vec<T> {
    // Move `dim` innermost: rows are then dense runs.
    let mut order: Vec<usize> = (0..l.rank()).filter(|&d| d != dim).collect();
    order.push(dim);
    let view = l.permute(&order);
    let x = dense(v, &view);
    let n = l.shape()[dim];
    let mut out = x.into_owned();
    if n == 0 {
        return out;
    }
    out.par_chunks_mut(n).with_min_len((4096 / n).max(1)).for_each(|row| {
        super::simd(
            #[inline(always)]
            || {
                let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                // A row of -inf gives NaN, as PyTorch does.
                let m = if m == T::neg_infinity() { T::zero() } else { m };
                // Separate map and lane-parallel sum loops so both vectorise.
                if log {
                    let sum = row.iter().fold(T::zero(), |s, &x| s + (x - m).exp_fast());
                    let lse = m + sum.ln();
                    row.iter_mut().for_each(|x| *x -= lse);
                } else {
                    row.iter_mut().for_each(|x| *x = (*x - m).exp_fast());
                    let inv = T::one() / super::reduce::sum_run(row);
                    row.iter_mut().for_each(|x| *x *= inv);
                }
            },
        )
    });
    out
}

/// Output is dense in the permuted order (dim innermost); the caller wraps it
/// in the inverse-permuted layout.
pub fn softmax(s: &CpuStorage, l: &Layout, dim: usize, log: bool) -> Result<CpuStorage> {
    let op = if log { "log_softmax" } else { "softmax" };
    with_float!(op, s, |v| softmax_t(v, l, dim, log))
}
