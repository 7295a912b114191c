//! Fused attention (see shaders/attention.wgsl): forward with online softmax
//! and the saved log-sum-exp; backward recomputes probabilities per row.

use super::params::{MAX_RANK, coalesce};
use super::{Params, WgpuStorage, groups_for, u32_of};
use crate::backend::cpu::attention::AttnGeom;
use crate::error::arg_err;
use crate::{Layout, Result};

const OP: &str = "scaled_dot_product_attention";
/// Largest head size (E and Ev): per-thread accumulators are this long.
const MAX_HEAD: usize = 128;

type View<'a> = (&'a WgpuStorage, &'a Layout);

fn params(g: &AttnGeom, mask: Option<&Layout>, offs: [u32; 6], want_ds: bool) -> Result<Params> {
    if g.e > MAX_HEAD || g.ev > MAX_HEAD {
        return Err(arg_err(OP, format!("head sizes up to {MAX_HEAD} on wgpu, got E = {} and Ev = {}", g.e, g.ev)));
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
        return Err(arg_err(OP, format!("mask layout of rank {} is too irregular for wgpu", mshape.len())));
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

fn dense_all<const N: usize>(views: [View; N]) -> Result<[(WgpuStorage, u32); N]> {
    let first = views[0].0;
    let mut out = Vec::with_capacity(N);
    for (s, l) in views {
        first.same_device(OP, s)?;
        s.expect_f32(OP)?;
        out.push(super::dense(s, l)?);
    }
    Ok(out.try_into().expect("N views"))
}

pub fn attention_fwd(q: View, k: View, v: View, mask: Option<View>, g: AttnGeom) -> Result<(WgpuStorage, WgpuStorage)> {
    let [(qd, oq), (kd, ok), (vd, ov)] = dense_all([q, k, v])?;
    if let Some((m, _)) = mask {
        qd.same_device(OP, m)?;
        m.expect_f32(OP)?;
    }
    let p = params(&g, mask.map(|m| m.1), [oq, ok, ov, 0, 0, 0], false)?;
    let out = qd.alloc_like(OP, g.b * g.l * g.ev, qd.dtype)?;
    let lse = qd.alloc_like(OP, g.b * g.l, qd.dtype)?;
    let mb = mask.map_or(qd.buffer(), |m| m.0.buffer());
    let ins = [qd.buffer(), kd.buffer(), vd.buffer(), mb, qd.buffer(), qd.buffer()];
    let groups = groups_for(g.b * g.l.div_ceil(64), 1);
    qd.dev.dispatch("attention", "attention_fwd", &p, &ins, &[out.buffer(), lse.buffer()], groups)?;
    Ok((out, lse))
}

/// Inputs q, k, v, out, dout, lse; returns (dq, dk, dv, dscores).
pub fn attention_bwd(t: [View; 6], mask: Option<View>, g: AttnGeom, want_ds: bool) -> Result<[WgpuStorage; 4]> {
    let [(qd, oq), (kd, ok), (vd, ov), (od, oo), (dod, odo), (lsed, olse)] = dense_all(t)?;
    if let Some((m, _)) = mask {
        qd.same_device(OP, m)?;
        m.expect_f32(OP)?;
    }
    let p = params(&g, mask.map(|m| m.1), [oq, ok, ov, odo, oo, olse], want_ds)?;
    let rows = g.b * g.l;
    let dev = &qd.dev;
    let stats = qd.alloc_like(OP, 2 * rows, qd.dtype)?;
    let scratch = qd.alloc_like(OP, 0, qd.dtype)?;
    let q0 = qd.buffer();
    let ins = [lsed.buffer(), od.buffer(), q0, q0, dod.buffer(), q0];
    dev.dispatch("attention", "attention_bwd_d", &p, &ins, &[stats.buffer(), scratch.buffer()], groups_for(rows, 64))?;
    let mb = mask.map_or(q0, |m| m.0.buffer());
    let ins = [q0, kd.buffer(), vd.buffer(), mb, dod.buffer(), stats.buffer()];
    let dq = qd.alloc_like(OP, rows * g.e, qd.dtype)?;
    let ds = qd.alloc_like(OP, if want_ds { rows * g.s } else { 0 }, qd.dtype)?;
    let groups = groups_for(g.b * g.l.div_ceil(64), 1);
    dev.dispatch("attention", "attention_bwd_dq", &p, &ins, &[dq.buffer(), ds.buffer()], groups)?;
    let dk = qd.alloc_like(OP, g.b * g.s * g.e, qd.dtype)?;
    let dv = qd.alloc_like(OP, g.b * g.s * g.ev, qd.dtype)?;
    let groups = groups_for(g.b * g.s.div_ceil(64), 1);
    dev.dispatch("attention", "attention_bwd_dkv", &p, &ins, &[dk.buffer(), dv.buffer()], groups)?;
    Ok([dq, dk, dv, ds])
}
