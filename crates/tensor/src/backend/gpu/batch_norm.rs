//! batch_norm: per-channel statistics and backward sums (a workgroup per
//! channel), then elementwise apply / dx. Same contract as the CPU kernels.

use super::{GpuBuf, Params, groups_for, u32_of};
use crate::{Layout, Result};

fn ncm(l: &Layout) -> (usize, usize, usize) {
    let s = l.shape();
    (s[0], s[1], s[2..].iter().product())
}

/// Elements [start, start + len) of a dense buffer as a new storage.
fn slice<S: GpuBuf>(s: &S, start: usize, len: usize) -> Result<S> {
    super::copy::contiguous(s, &Layout::contiguous_with_offset(&[len], start))
}

/// Per-channel (mean, biased variance).
pub fn batch_norm_stats<S: GpuBuf>(x: &S, l: &Layout) -> Result<(S, S)> {
    let op = "batch_norm";
    x.expect_f32(op)?;
    let (n, c, m) = ncm(l);
    let (xd, off) = super::dense(x, l)?;
    u32_of(op, l.numel())?;
    let out = x.alloc_like(op, 2 * c, x.dtype())?;
    let p = Params::new().u(n).u(c).u(m).u(off as usize);
    let b = &xd;
    x.launch("batch_norm", "batch_norm_stats", false, &p, &[b, b, b, b, b], &[&out], groups_for(c, 1), 256)?;
    Ok((slice(&out, 0, c)?, slice(&out, c, c)?))
}

pub fn batch_norm_apply<S: GpuBuf>(x: &S, l: &Layout, mean: &S, invstd: &S, w: Option<&S>, b: Option<&S>) -> Result<S> {
    let op = "batch_norm";
    x.expect_f32(op)?;
    let (n, c, m) = ncm(l);
    let (xd, off) = super::dense(x, l)?;
    let total = u32_of(op, n * c * m)? as usize;
    let out = x.alloc_like(op, total, x.dtype())?;
    let p = Params::new().u(n).u(c).u(m).u(off as usize).flag(w.is_some()).flag(b.is_some());
    let ins = [&xd, mean, invstd, w.unwrap_or(mean), b.unwrap_or(mean)];
    x.launch("batch_norm", "batch_norm_apply", false, &p, &ins, &[&out], groups_for(total, 256), 256)?;
    Ok(out)
}

/// (dx, Σdy·x̂, Σdy), as on the CPU.
pub fn batch_norm_bwd<S: GpuBuf>(
    x: &S,
    lx: &Layout,
    dy: &S,
    ldy: &Layout,
    mean: &S,
    invstd: &S,
    w: Option<&S>,
) -> Result<(S, S, S)> {
    let op = "batch_norm_bwd";
    x.expect_f32(op)?;
    dy.expect_f32(op)?;
    x.same_device(op, dy)?;
    let (n, c, m) = ncm(lx);
    let (xd, ox) = super::dense(x, lx)?;
    let (dyd, ody) = super::dense(dy, ldy)?;
    let total = u32_of(op, n * c * m)? as usize;
    let coef = x.alloc_like(op, 5 * c, x.dtype())?;
    let p = Params::new().u(n).u(c).u(m).u(ox as usize).u(ody as usize).flag(w.is_some());
    let ins = [&xd, &dyd, mean, invstd, w.unwrap_or(mean)];
    x.launch("batch_norm", "batch_norm_bwd_sums", false, &p, &ins, &[&coef], groups_for(c, 1), 256)?;
    let dx = x.alloc_like(op, total, x.dtype())?;
    let p = Params::new().u(n).u(c).u(m).u(ox as usize).u(ody as usize);
    let ins = [&xd, &dyd, mean, invstd, &coef];
    x.launch("batch_norm", "batch_norm_bwd_dx", false, &p, &ins, &[&dx], groups_for(total, 256), 256)?;
    Ok((dx, slice(&coef, 0, c)?, slice(&coef, c, c)?))
}
