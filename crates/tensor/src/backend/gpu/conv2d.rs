//! conv2d forward, backward-input and backward-weight: one implicit-GEMM
//! shader with three entry points (see shaders/conv2d.wgsl). conv_transpose2d
//! reuses them with the roles swapped, exactly as on the CPU.

use super::{GpuBuf, Params, groups_for, u32_of};
use crate::ops::conv2d::ConvGeom;
use crate::{Layout, Result};

fn run<S: GpuBuf>(
    entry: &'static str,
    in0: (&S, &Layout),
    in1: (&S, &Layout),
    g: ConvGeom,
    [mm, nn, out_len]: [usize; 3],
) -> Result<S> {
    in0.0.same_device(entry, in1.0)?;
    if in0.0.dtype() != in1.0.dtype() {
        return Err(crate::Error::DTypeMismatch { op: entry, lhs: in0.0.dtype(), rhs: in1.0.dtype() });
    }
    let half = in0.0.half_variant(entry)?;
    let (a, oa) = super::dense(in0.0, in0.1)?;
    let (b, ob) = super::dense(in1.0, in1.1)?;
    u32_of(entry, out_len.max(a.len()).max(b.len()))?;
    let out = a.alloc_like(entry, out_len, a.dtype())?;
    let kdepth = match entry {
        "conv2d_fwd" => g.c / g.p.groups * g.kh * g.kw,
        "conv2d_bwd_input" => g.o / g.p.groups * g.kh * g.kw,
        _ => g.n * g.oh * g.ow,
    };
    if kdepth == 0 {
        out.clear()?;
        return Ok(out);
    }
    let p = Params::new()
        .u(g.n)
        .u(g.c)
        .u(g.h)
        .u(g.w)
        .u(g.o)
        .u(g.kh)
        .u(g.kw)
        .u(g.oh)
        .u(g.ow)
        .u(g.p.stride[0])
        .u(g.p.stride[1])
        .u(g.p.padding[0])
        .u(g.p.padding[1])
        .u(g.p.dilation[0])
        .u(g.p.dilation[1])
        .u(g.p.groups)
        .u(oa as usize)
        .u(ob as usize);
    let tiles = mm.div_ceil(64) * nn.div_ceil(64) * g.p.groups;
    a.launch("conv2d", entry, half, &p, &[&a, &b], &[&out], groups_for(tiles, 1), 256)?;
    Ok(out)
}

pub fn conv2d_fwd<S: GpuBuf>(x: &S, lx: &Layout, w: &S, lw: &Layout, g: ConvGeom) -> Result<S> {
    let dims = [g.o / g.p.groups, g.n * g.oh * g.ow, g.n * g.o * g.oh * g.ow];
    run("conv2d_fwd", (x, lx), (w, lw), g, dims)
}

pub fn conv2d_bwd_input<S: GpuBuf>(dy: &S, ldy: &Layout, w: &S, lw: &Layout, g: ConvGeom) -> Result<S> {
    let dims = [g.c / g.p.groups, g.n * g.h * g.w, g.n * g.c * g.h * g.w];
    run("conv2d_bwd_input", (dy, ldy), (w, lw), g, dims)
}

pub fn conv2d_bwd_weight<S: GpuBuf>(x: &S, lx: &Layout, dy: &S, ldy: &Layout, g: ConvGeom) -> Result<S> {
    let cols = g.c / g.p.groups * g.kh * g.kw;
    let dims = [g.o / g.p.groups, cols, g.o * cols];
    run("conv2d_bwd_weight", (x, lx), (dy, ldy), g, dims)
}
