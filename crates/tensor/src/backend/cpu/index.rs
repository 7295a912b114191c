//! Index ops: gather / scatter_add along a dim (PyTorch semantics) and
//! index_select / index_add with a 1-D index. Out-of-range indices are
//! errors, never panics or silent wraps.

use rayon::prelude::*;

use super::{CpuStorage, dense, with_any, with_float};
use crate::error::arg_err;
use crate::{Float, Layout, Result};

fn check(op: &'static str, idx: &[i64], len: usize) -> Result<()> {
    match idx.iter().find(|&&i| i < 0 || i as usize >= len) {
        Some(bad) => Err(arg_err(op, format!("index {bad} is out of range for a dim of size {len}"))),
        None => Ok(()),
    }
}

/// (outer, dim, inner) split of a shape around `dim`.
fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

/// Decomposes a linear index of `shape` (excluding `dim`) into the offset of
/// a dense tensor of `shape_x` at the same coordinates, with `dim` at 0.
fn base_offset(i: usize, shape: &[usize], shape_x: &[usize], dim: usize) -> usize {
    let (mut rest, mut off, mut stride) = (i, 0, 1);
    for d in (0..shape.len()).rev() {
        let c = rest % shape[d];
        rest /= shape[d];
        if d != dim {
            off += c * stride;
        }
        stride *= shape_x[d];
    }
    off
}

fn gather_t<T: Copy + Send + Sync + Default>(x: &[T], lx: &Layout, dim: usize, idx: &[i64], shape: &[usize]) -> Vec<T> {
    let x = dense(x, lx);
    let xs = lx.shape();
    let dstride: usize = xs[dim + 1..].iter().product();
    let mut out = vec![T::default(); idx.len()];
    out.par_iter_mut().enumerate().with_min_len(4096).for_each(|(i, o)| {
        *o = x[base_offset(i, shape, xs, dim) + idx[i] as usize * dstride];
    });
    out
}

fn scatter_add_t<T: Float>(src: &[T], ls: &Layout, dim: usize, idx: &[i64], out_shape: &[usize]) -> Vec<T> {
    let src = dense(src, ls);
    let shape = ls.shape();
    let mut out = vec![T::zero(); out_shape.iter().product()];
    let (outer, _, _) = split(shape, dim);
    let src_block: usize = shape[dim..].iter().product();
    let out_block: usize = out_shape[dim..].iter().product();
    let dstride: usize = out_shape[dim + 1..].iter().product();
    if out_block == 0 || src_block == 0 {
        return out;
    }
    // Writes of outer block `b` stay inside output block `b`: parallel over them.
    out.par_chunks_mut(out_block).take(outer).enumerate().for_each(|(b, ob)| {
        for j in 0..src_block {
            let i = b * src_block + j;
            let off = base_offset(i, shape, out_shape, dim) - b * out_block;
            ob[off + idx[i] as usize * dstride] += src[i];
        }
    });
    out
}

fn index_select_t<T: Copy + Send + Sync + Default>(x: &[T], lx: &Layout, dim: usize, idx: &[i64]) -> Vec<T> {
    let x = dense(x, lx);
    let (outer, d, inner) = split(lx.shape(), dim);
    let k = idx.len();
    let mut out = vec![T::default(); outer * k * inner];
    if inner == 0 {
        return out;
    }
    out.par_chunks_mut(inner).enumerate().for_each(|(r, row)| {
        let (o, j) = (r / k, r % k);
        row.copy_from_slice(&x[(o * d + idx[j] as usize) * inner..][..inner]);
    });
    out
}

fn index_add_t<T: Float>(src: &[T], ls: &Layout, dim: usize, idx: &[i64], len: usize) -> Vec<T> {
    let src = dense(src, ls);
    let (outer, k, inner) = split(ls.shape(), dim);
    let mut out = vec![T::zero(); outer * len * inner];
    if inner == 0 || len == 0 {
        return out;
    }
    out.par_chunks_mut(len * inner).enumerate().for_each(|(o, ob)| {
        for (j, &t) in idx.iter().enumerate().take(k) {
            let s = &src[(o * k + j) * inner..][..inner];
            let d = &mut ob[t as usize * inner..][..inner];
            d.iter_mut().zip(s).for_each(|(a, b)| *a += *b);
        }
    });
    out
}

/// `shape` is the index's (= the output's) shape.
pub fn gather(x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
    let idx = dense(idx.as_i64("gather")?, li);
    check("gather", &idx, lx.shape()[dim])?;
    Ok(with_any!(x, |v| gather_t(v, lx, dim, &idx, li.shape())))
}

pub fn scatter_add(
    src: &CpuStorage,
    ls: &Layout,
    dim: usize,
    idx: &CpuStorage,
    li: &Layout,
    out_shape: &[usize],
) -> Result<CpuStorage> {
    let idx = dense(idx.as_i64("scatter_add")?, li);
    check("scatter_add", &idx, out_shape[dim])?;
    with_float!("scatter_add", src, |v| scatter_add_t(v, ls, dim, &idx, out_shape))
}

pub fn index_select(x: &CpuStorage, lx: &Layout, dim: usize, idx: &CpuStorage, li: &Layout) -> Result<CpuStorage> {
    let idx = dense(idx.as_i64("index_select")?, li);
    check("index_select", &idx, lx.shape()[dim])?;
    Ok(with_any!(x, |v| index_select_t(v, lx, dim, &idx)))
}

pub fn index_add(
    src: &CpuStorage,
    ls: &Layout,
    dim: usize,
    idx: &CpuStorage,
    li: &Layout,
    len: usize,
) -> Result<CpuStorage> {
    let idx = dense(idx.as_i64("index_add")?, li);
    check("index_add", &idx, len)?;
    with_float!("index_add", src, |v| index_add_t(v, ls, dim, &idx, len))
}
