//! The fused Adam/AdamW update, in place on dense parameter and moments.

use super::{GpuBuf, Params, groups_for, u32_of};
use crate::ops::adam::AdamStep;
use crate::{Layout, Result};

pub fn adam_update<S: GpuBuf>(p: &mut S, g: &S, lg: &Layout, m: &mut S, v: &mut S, step: &AdamStep) -> Result<()> {
    let op = "adam_update";
    for s in [&*p, g, &*m, &*v] {
        s.expect_f32(op)?;
        p.same_device(op, s)?;
    }
    let (gd, off) = super::dense(g, lg)?;
    let n = u32_of(op, lg.numel())? as usize;
    let s = step.config;
    let mode = if s.weight_decay == 0.0 {
        0
    } else if s.decoupled {
        2
    } else {
        1
    };
    let prm = Params::new()
        .u(n)
        .u(off as usize)
        .f(s.beta1)
        .f(s.beta2)
        .f(1.0 - s.beta1)
        .f(1.0 - s.beta2)
        .f(s.weight_decay)
        .f(1.0 - s.lr * s.weight_decay)
        .f(1.0 / step.bc2.sqrt())
        .f(s.eps)
        .f(s.lr / step.bc1)
        .u(mode);
    let outs = [&*p, &*m, &*v];
    p.launch("adam", "adam_update", false, &prm, &[&gd], &outs, groups_for(n, 256), 256)
}
