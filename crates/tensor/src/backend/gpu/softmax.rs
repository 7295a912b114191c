//! softmax / log_softmax: `dim` is moved innermost and densified, then one
//! workgroup per row. Output is dense in the permuted order, as on the CPU.

use super::{GpuBuf, Params, groups_for, u32_of};
use crate::{Layout, Result};

pub fn softmax<S: GpuBuf>(s: &S, l: &Layout, dim: usize, log: bool) -> Result<S> {
    let op = if log { "log_softmax" } else { "softmax" };
    s.expect_f32(op)?;
    let mut order: Vec<usize> = (0..l.rank()).filter(|&d| d != dim).collect();
    order.push(dim);
    let (x, off) = super::dense(s, &l.permute(&order))?;
    let n = l.numel();
    let len = l.shape()[dim];
    let out = s.alloc_like(op, n, s.dtype())?;
    if len == 0 {
        return Ok(out);
    }
    let rows = n / len;
    let p = Params::new().u(u32_of(op, rows)? as usize).u(u32_of(op, len)? as usize).flag(log).u(off as usize);
    s.launch("softmax", "softmax_fwd", false, &p, &[&x], &[&out], groups_for(rows, 1), 256)?;
    Ok(out)
}
