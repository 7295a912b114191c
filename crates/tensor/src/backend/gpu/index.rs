//! gather / scatter_add / index_select / index_add (see shaders/index.wgsl).
//! Indices are validated on the host first (one read of the index tensor):
//! an out-of-range index is an error here too, never a silent clamp.

use super::{GpuBuf, Params, elem_words, groups_for, u32_of};
use crate::error::arg_err;
use crate::{Layout, Result};

fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

/// Dense index on the device, after checking every value is in [0, len).
fn checked_index<S: GpuBuf>(op: &'static str, idx: &S, li: &Layout, len: usize) -> Result<(S, u32)> {
    idx.expect_i64(op)?;
    let vals = super::to_f64_vec(idx, li)?;
    if let Some(bad) = vals.iter().find(|&&i| i < 0.0 || i as usize >= len) {
        return Err(arg_err(op, format!("index {bad} is out of range for a dim of size {len}")));
    }
    super::dense(idx, li)
}

#[allow(clippy::too_many_arguments)]
fn run<S: GpuBuf>(
    op: &'static str,
    entry: &'static str,
    x: &S,
    lx: &Layout,
    idx: (&S, u32),
    [outer, dsize, inner, k]: [usize; 4],
    n_out: usize,
    one_d: bool,
) -> Result<S> {
    x.same_device(op, idx.0)?;
    let (xd, off) = super::dense(x, lx)?;
    u32_of(op, n_out.max(lx.numel()))?;
    let out = x.alloc_like(op, n_out, x.dtype())?;
    let es = elem_words(op, x.dtype(), x.device())?;
    let p = Params::new().u(outer).u(dsize).u(inner).u(k).u(es).u(off as usize).u(idx.1 as usize).flag(one_d);
    x.launch("index", entry, false, &p, &[&xd, idx.0], &[&out], groups_for(n_out, 256), 256)?;
    Ok(out)
}

pub fn gather<S: GpuBuf>(x: &S, lx: &Layout, dim: usize, idx: &S, li: &Layout) -> Result<S> {
    let i = checked_index("gather", idx, li, lx.shape()[dim])?;
    let (outer, d, inner) = split(lx.shape(), dim);
    let k = li.shape()[dim];
    run("gather", "index_gather", x, lx, (&i.0, i.1), [outer, d, inner, k], li.numel(), false)
}

pub fn index_select<S: GpuBuf>(x: &S, lx: &Layout, dim: usize, idx: &S, li: &Layout) -> Result<S> {
    let i = checked_index("index_select", idx, li, lx.shape()[dim])?;
    let (outer, d, inner) = split(lx.shape(), dim);
    let k = li.numel();
    run("index_select", "index_select", x, lx, (&i.0, i.1), [outer, d, inner, k], outer * k * inner, false)
}

pub fn scatter_add<S: GpuBuf>(
    src: &S,
    ls: &Layout,
    dim: usize,
    idx: &S,
    li: &Layout,
    out_shape: &[usize],
) -> Result<S> {
    src.expect_f32("scatter_add")?;
    let i = checked_index("scatter_add", idx, li, out_shape[dim])?;
    let (outer, k, inner) = split(ls.shape(), dim);
    let n_out = out_shape.iter().product();
    run("scatter_add", "index_add_f32", src, ls, (&i.0, i.1), [outer, out_shape[dim], inner, k], n_out, false)
}

pub fn index_add<S: GpuBuf>(src: &S, ls: &Layout, dim: usize, idx: &S, li: &Layout, len: usize) -> Result<S> {
    src.expect_f32("index_add")?;
    let i = checked_index("index_add", idx, li, len)?;
    let (outer, k, inner) = split(ls.shape(), dim);
    run("index_add", "index_add_f32", src, ls, (&i.0, i.1), [outer, len, inner, k], outer * len * inner, true)
}
