//! Reductions over any set of dims: the view is permuted so the reduced dims
//! are innermost, densified once, and each output reduces one dense run.

use rayon::prelude::*;

use super::{CpuStorage, dense};
use crate::ops::reduce::ReduceOp;
use crate::{Float, Layout, Result};

/// Kept dims first, reduced dims last; returns the view and the run length.
fn reduced_last(l: &Layout, dims: &[usize]) -> (Layout, usize) {
    let mut order: Vec<usize> = (0..l.rank()).filter(|d| !dims.contains(d)).collect();
    order.extend_from_slice(dims);
    let run = dims.iter().map(|&d| l.shape()[d]).product();
    (l.permute(&order), run)
}

pub(crate) fn sum_run<T: Float>(x: &[T]) -> T {
    // Eight independent accumulators: vectorises and loses less precision
    // than one long serial chain.
    let mut acc = [T::zero(); 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut s = chunks.remainder().iter().fold(T::zero(), |a, &b| a + b);
    for a in acc {
        s += a;
    }
    s
}

/// (index, value) of the extreme element; NaN wins (as in torch.max), ties
/// keep the first occurrence.
fn arg_extreme<T: Float>(x: &[T], max: bool) -> (usize, T) {
    let mut best = (0, x[0]);
    for (i, &v) in x.iter().enumerate().skip(1) {
        if best.1.is_nan() {
            break;
        }
        if v.is_nan() || (max && v > best.1) || (!max && v < best.1) {
            best = (i, v);
        }
    }
    best
}

fn reduce_t<T: Float>(v: &[T], l: &Layout, dims: &[usize], op: ReduceOp) -> Result<(Vec<T>, Vec<i64>)> {
    let (view, run) = reduced_last(l, dims);
    let x = dense(v, &view);
    if run == 0 {
        if op != ReduceOp::Sum {
            return Err(crate::error::shape_err(
                op.name(),
                format!("cannot reduce an empty dim of shape {:?} (dims {dims:?})", l.shape()),
            ));
        }
        let kept: usize = (0..l.rank()).filter(|d| !dims.contains(d)).map(|d| l.shape()[d]).product();
        return Ok((vec![T::zero(); kept], vec![]));
    }
    let outs = x.len() / run;
    let rows = x.par_chunks(run).with_min_len((4096 / run).max(1));
    Ok(match op {
        ReduceOp::Sum if outs < 4 && run >= 1 << 16 => {
            // Few long runs: split each run across threads instead.
            // Partials collected in order, then added serially: deterministic.
            let sums = x
                .chunks(run)
                .map(|r| {
                    r.par_chunks(1 << 14).map(sum_run).collect::<Vec<T>>().into_iter().fold(T::zero(), |a, b| a + b)
                })
                .collect();
            (sums, vec![])
        }
        ReduceOp::Sum => (rows.map(sum_run).collect(), vec![]),
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            let (idx, vals): (Vec<i64>, Vec<T>) = rows
                .map(|r| {
                    let (i, v) = arg_extreme(r, max);
                    (i as i64, v)
                })
                .unzip();
            (vals, idx)
        }
    })
}

/// Reduces `dims` (sorted, distinct). Returns the values (shape: kept dims in
/// order) and, for Max/Min, the flat index of the winner within the reduced dims.
pub fn reduce(s: &CpuStorage, l: &Layout, dims: &[usize], op: ReduceOp) -> Result<(CpuStorage, CpuStorage)> {
    let (vals, idx) = match s {
        CpuStorage::F32(v) => {
            let (a, i) = reduce_t(v, l, dims, op)?;
            (CpuStorage::F32(a), i)
        }
        CpuStorage::F64(v) => {
            let (a, i) = reduce_t(v, l, dims, op)?;
            (CpuStorage::F64(a), i)
        }
        CpuStorage::I64(v) if op == ReduceOp::Sum => {
            let (view, run) = reduced_last(l, dims);
            let x = dense(v, &view);
            let kept: usize = (0..l.rank()).filter(|d| !dims.contains(d)).map(|d| l.shape()[d]).product();
            let sums = if run == 0 {
                vec![0; kept]
            } else {
                x.chunks(run).map(|r| r.iter().fold(0i64, |a, &b| a.wrapping_add(b))).collect()
            };
            (CpuStorage::I64(sums), vec![])
        }
        other => {
            return Err(crate::Error::UnsupportedDType {
                op: op.name(),
                dtype: other.dtype(),
                device: crate::Device::Cpu,
            });
        }
    };
    Ok((vals, CpuStorage::I64(idx)))
}
