//! Fused attention (see shaders/attention.wgsl): forward with online softmax
//! and the saved log-sum-exp; backward recomputes probabilities per row.

use super::params::{MAX_RANK, coalesce};
use super::{GpuBuf, Params, groups_for, u32_of};
use crate::backend::cpu::attention::AttnGeom;
use crate::error::arg_err;
use crate::{Layout, Result};

const OP: &str = "scaled_dot_product_attention";
/// Largest head size (E and Ev): per-thread accumulators are this long.
const MAX_HEAD: usize = 128;

type View<'a, S> = (&'a S, &'a Layout);

fn params(g: &AttnGeom, mask: Option<&Layout>, offs: [u32; 6], want_ds: bool) -> Result<Params> {
    if g.e > MAX_HEAD || g.ev > MAX_HEAD {
        return Err(arg_err(OP, format!("head sizes up to {MAX_HEAD} on GPUs, got E = {} and Ev = {}", g.e, g.ev)));
    }
    u32_of(OP, g.b * g.l * g.s.max(g.e).max(g.ev))?;
    let (mshape, mst, moff) = match mask {
        Some(l) => {
            let (s, st) = coalesce(l.shape(), &[l.strides()]);
            (s, st[0].clone(), l.offset())
        }
        None => (vec![], vec![], 0),
    };
    if mshape.len() > MAX_RANK {
        return Err(arg_err(OP, format!("mask layout of rank {} is too irregular for the GPU kernels", mshape.len())));
    }
    let mut p = Params::new()
        .u(g.b)
        .u(g.l)
        .u(g.s)
        .u(g.e)
        .u(g.ev)
        .f(g.scale)
        .flag(g.causal)
        .flag(mask.is_some())
        .u(mshape.len())
        .dims(&mshape, 1)
        .dims(&mst, 0)
        .u(moff);
    for o in offs {
        p = p.u(o as usize);
    }
    Ok(p.flag(want_ds))
}

fn dense_all<S: GpuBuf, const N: usize>(views: [View<S>; N]) -> Result<[(S, u32); N]> {
    let first = views[0].0;
    let mut out = Vec::with_capacity(N);
    for (s, l) in views {
        first.same_device(OP, s)?;
        s.expect_f32(OP)?;
        out.push(super::dense(s, l)?);
    }
    Ok(out.try_into().expect("N views"))
}

pub fn attention_fwd<S: GpuBuf>(
    q: View<S>,
    k: View<S>,
    v: View<S>,
    mask: Option<View<S>>,
    g: AttnGeom,
) -> Result<(S, S)> {
    let [(qd, oq), (kd, ok), (vd, ov)] = dense_all([q, k, v])?;
    if let Some((m, _)) = mask {
        qd.same_device(OP, m)?;
        m.expect_f32(OP)?;
    }
    let p = params(&g, mask.map(|m| m.1), [oq, ok, ov, 0, 0, 0], false)?;
    let out = qd.alloc_like(OP, g.b * g.l * g.ev, qd.dtype())?;
    let lse = qd.alloc_like(OP, g.b * g.l, qd.dtype())?;
    let mb = mask.map_or(&qd, |m| m.0);
    let ins = [&qd, &kd, &vd, mb, &qd, &qd];
    let groups = groups_for(g.b * g.l.div_ceil(64), 1);
    qd.launch("attention", "attention_fwd", false, &p, &ins, &[&out, &lse], groups, 64)?;
    Ok((out, lse))
}

/// Inputs q, k, v, out, dout, lse; returns (dq, dk, dv, dscores).
pub fn attention_bwd<S: GpuBuf>(t: [View<S>; 6], mask: Option<View<S>>, g: AttnGeom, want_ds: bool) -> Result<[S; 4]> {
    let [(qd, oq), (kd, ok), (vd, ov), (od, oo), (dod, odo), (lsed, olse)] = dense_all(t)?;
    if let Some((m, _)) = mask {
        qd.same_device(OP, m)?;
        m.expect_f32(OP)?;
    }
    let p = params(&g, mask.map(|m| m.1), [oq, ok, ov, odo, oo, olse], want_ds)?;
    let rows = g.b * g.l;
    let stats = qd.alloc_like(OP, 2 * rows, qd.dtype())?;
    let scratch = qd.alloc_like(OP, 0, qd.dtype())?;
    let ins = [&lsed, &od, &qd, &qd, &dod, &qd];
    qd.launch("attention", "attention_bwd_d", false, &p, &ins, &[&stats, &scratch], groups_for(rows, 64), 64)?;
    let mb = mask.map_or(&qd, |m| m.0);
    let ins = [&qd, &kd, &vd, mb, &dod, &stats];
    let dq = qd.alloc_like(OP, rows * g.e, qd.dtype())?;
    let ds = qd.alloc_like(OP, if want_ds { rows * g.s } else { 0 }, qd.dtype())?;
    let groups = groups_for(g.b * g.l.div_ceil(64), 1);
    qd.launch("attention", "attention_bwd_dq", false, &p, &ins, &[&dq, &ds], groups, 64)?;
    let dk = qd.alloc_like(OP, g.b * g.s * g.e, qd.dtype())?;
    let dv = qd.alloc_like(OP, g.b * g.s * g.ev, qd.dtype())?;
    let groups = groups_for(g.b * g.s.div_ceil(64), 1);
    qd.launch("attention", "attention_bwd_dkv", false, &p, &ins, &[&dk, &dv], groups, 64)?;
    Ok([dq, dk, dv, ds])
}
