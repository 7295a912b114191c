//! avg_pool2d forward/adjoint and max_pool2d's argmax (see shaders/pool.wgsl).

use super::{GpuBuf, Params, groups_for, u32_of};
use crate::ops::pool::PoolGeom;
use crate::{DType, Layout, Result};

fn params(g: &PoolGeom, off: u32) -> Params {
    Params::new()
        .u(g.planes)
        .u(g.h)
        .u(g.w)
        .u(g.oh)
        .u(g.ow)
        .u(g.kernel[0])
        .u(g.kernel[1])
        .u(g.stride[0])
        .u(g.stride[1])
        .u(g.padding[0])
        .u(g.padding[1])
        .u(g.dilation[0])
        .u(g.dilation[1])
        .flag(g.count_include_pad)
        .u(off as usize)
}

fn run<S: GpuBuf>(entry: &'static str, x: &S, l: &Layout, g: PoolGeom, n_out: usize, dtype: DType) -> Result<S> {
    x.expect_f32(entry)?;
    let (xd, off) = super::dense(x, l)?;
    u32_of(entry, n_out.max(l.numel()))?;
    let out = x.alloc_like(entry, n_out, dtype)?;
    // The unused output slot gets a scratch buffer of the other kind.
    let scratch = x.alloc_like(entry, 0, DType::F32)?;
    let outs = if dtype == DType::I64 { [&scratch, &out] } else { [&out, &scratch] };
    x.launch("pool", entry, false, &params(&g, off), &[&xd], &outs, groups_for(n_out, 256), 256)?;
    Ok(out)
}

pub fn avg_pool2d_fwd<S: GpuBuf>(x: &S, l: &Layout, g: PoolGeom) -> Result<S> {
    run("avg_pool2d_fwd", x, l, g, g.planes * g.oh * g.ow, DType::F32)
}

pub fn avg_pool2d_bwd<S: GpuBuf>(dy: &S, l: &Layout, g: PoolGeom) -> Result<S> {
    run("avg_pool2d_bwd", dy, l, g, g.planes * g.h * g.w, DType::F32)
}

pub fn max_pool2d_indices<S: GpuBuf>(x: &S, l: &Layout, g: PoolGeom) -> Result<S> {
    run("max_pool2d_indices", x, l, g, g.planes * g.oh * g.ow, DType::I64)
}
