//! Fused scaled-dot-product attention. The forward streams keys in blocks
//! with an online softmax (O(S) memory per query row, no L×S matrix) and
//! saves the row log-sum-exp; the backward recomputes probabilities from it
//! (dq row-parallel, then dk/dv key-parallel, so no atomics are needed).

use rayon::prelude::*;

use super::{CpuStorage, dense};
use crate::{Float, Layout, Result};

/// Shapes of one attention call, batch dims flattened into `b`.
#[derive(Debug, Clone, Copy)]
pub struct AttnGeom {
    pub b: usize,
    pub l: usize,
    pub s: usize,
    pub e: usize,
    pub ev: usize,
    pub scale: f64,
    pub causal: bool,
}

/// An additive mask viewed through its layout broadcast to (batch..., L, S).
struct Mask<'a, T> {
    data: &'a [T],
    layout: &'a Layout,
}

impl<T: Float> Mask<'_, T> {
    /// Offset of element (batch b, row i, col 0), and the column stride.
    fn row(&self, b: usize, i: usize) -> (usize, usize) {
        let r = self.layout.rank();
        let (shape, strides) = (self.layout.shape(), self.layout.strides());
        let mut off = self.layout.offset() + i * strides[r - 2];
        let mut rest = b;
        for d in (0..r - 2).rev() {
            off += (rest % shape[d]) * strides[d];
            rest /= shape[d];
        }
        (off, strides[r - 1])
    }
}

fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| s + x * y)
}

/// Scores of row (b, i) against keys `j0..j1` into `out` (-inf where masked).
#[allow(clippy::too_many_arguments)]
fn scores<T: Float>(
    g: &AttnGeom,
    q_i: &[T],
    k: &[T],
    mask: &Option<Mask<T>>,
    b: usize,
    i: usize,
    j0: usize,
    out: &mut [T],
) {
    let scale = T::from_f64(g.scale);
    let mrow = mask.as_ref().map(|m| m.row(b, i));
    for (t, o) in out.iter_mut().enumerate() {
        let j = j0 + t;
        *o = if g.causal && j > i {
            T::neg_infinity()
        } else {
            let mut s = scale * dot(q_i, &k[(b * g.s + j) * g.e..][..g.e]);
            if let (Some(m), Some((off, cs))) = (mask, mrow) {
                s += m.data[off + j * cs];
            }
            s
        };
    }
}

const KEY_BLOCK: usize = 64;

fn fwd_t<T: Float>(q: &[T], k: &[T], v: &[T], mask: Option<Mask<T>>, g: AttnGeom) -> (Vec<T>, Vec<T>) {
    let mut out = vec![T::zero(); g.b * g.l * g.ev];
    let mut lse = vec![T::zero(); g.b * g.l];
    out.par_chunks_mut(g.ev.max(1)).zip(lse.par_iter_mut()).enumerate().for_each(|(row, (o, lse_i))| {
        let (b, i) = (row / g.l, row % g.l);
        let q_i = &q[row * g.e..][..g.e];
        let (mut m, mut sum) = (T::neg_infinity(), T::zero());
        let mut sc = [T::zero(); KEY_BLOCK];
        for j0 in (0..g.s).step_by(KEY_BLOCK) {
            let n = KEY_BLOCK.min(g.s - j0);
            scores(&g, q_i, k, &mask, b, i, j0, &mut sc[..n]);
            let bm = sc[..n].iter().fold(T::neg_infinity(), |a, &x| a.max(x));
            if bm == T::neg_infinity() {
                continue;
            }
            let new_m = m.max(bm);
            let corr = (m - new_m).exp();
            sum *= corr;
            o.iter_mut().for_each(|x| *x *= corr);
            for (t, &s) in sc[..n].iter().enumerate() {
                let p = (s - new_m).exp();
                sum += p;
                let v_j = &v[(b * g.s + j0 + t) * g.ev..][..g.ev];
                o.iter_mut().zip(v_j).for_each(|(x, &y)| *x += p * y);
            }
            m = new_m;
        }
        // A fully masked row gives 0/0 = NaN, as PyTorch does.
        let inv = T::one() / sum;
        o.iter_mut().for_each(|x| *x *= inv);
        *lse_i = m + sum.ln();
    });
    (out, lse)
}

struct Saved<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    o: &'a [T],
    dout: &'a [T],
    lse: &'a [T],
}

/// Returns (dq, dk, dv, dscores if `want_ds`: the gradient of the
/// pre-softmax scores, i.e. of an additive mask before broadcasting).
fn bwd_t<T: Float>(t: Saved<T>, mask: Option<Mask<T>>, g: AttnGeom, want_ds: bool) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let scale = T::from_f64(g.scale);
    // D_i = do_i · o_i
    let d: Vec<T> =
        (0..g.b * g.l).into_par_iter().map(|r| dot(&t.dout[r * g.ev..][..g.ev], &t.o[r * g.ev..][..g.ev])).collect();
    // Probability and score-gradient of (b, i, j), recomputed from lse.
    let p_ds = |b: usize, i: usize, j: usize, s: T| {
        let row = b * g.l + i;
        let p = (s - t.lse[row]).exp();
        let dp = dot(&t.dout[row * g.ev..][..g.ev], &t.v[(b * g.s + j) * g.ev..][..g.ev]);
        (p, p * (dp - d[row]))
    };
    let mut dq = vec![T::zero(); g.b * g.l * g.e];
    let mut ds_all = vec![T::zero(); if want_ds { g.b * g.l * g.s } else { 0 }];
    let ds_rows: Vec<Option<&mut [T]>> = if want_ds {
        ds_all.chunks_mut(g.s.max(1)).map(Some).collect()
    } else {
        (0..g.b * g.l).map(|_| None).collect()
    };
    dq.par_chunks_mut(g.e.max(1)).zip(ds_rows.into_par_iter()).enumerate().for_each(|(row, (dq_i, mut ds_row))| {
        let (b, i) = (row / g.l, row % g.l);
        let mut s = vec![T::zero(); g.s];
        scores(&g, &t.q[row * g.e..][..g.e], t.k, &mask, b, i, 0, &mut s);
        for (j, &sj) in s.iter().enumerate() {
            if sj == T::neg_infinity() {
                continue;
            }
            let (_, ds) = p_ds(b, i, j, sj);
            if let Some(r) = ds_row.as_deref_mut() {
                r[j] = ds;
            }
            let k_j = &t.k[(b * g.s + j) * g.e..][..g.e];
            dq_i.iter_mut().zip(k_j).for_each(|(x, &y)| *x += scale * ds * y);
        }
    });
    let mut dk = vec![T::zero(); g.b * g.s * g.e];
    let mut dv = vec![T::zero(); g.b * g.s * g.ev];
    dk.par_chunks_mut(g.e.max(1)).zip(dv.par_chunks_mut(g.ev.max(1))).enumerate().for_each(|(col, (dk_j, dv_j))| {
        let (b, j) = (col / g.s, col % g.s);
        let mut s = [T::zero()];
        for i in 0..g.l {
            let row = b * g.l + i;
            scores(&g, &t.q[row * g.e..][..g.e], t.k, &mask, b, i, j, &mut s);
            if s[0] == T::neg_infinity() {
                continue;
            }
            let (p, ds) = p_ds(b, i, j, s[0]);
            let do_i = &t.dout[row * g.ev..][..g.ev];
            dv_j.iter_mut().zip(do_i).for_each(|(x, &y)| *x += p * y);
            let q_i = &t.q[row * g.e..][..g.e];
            dk_j.iter_mut().zip(q_i).for_each(|(x, &y)| *x += scale * ds * y);
        }
    });
    (dq, dk, dv, ds_all)
}

/// q, k, v are (b, l|s, e|ev) dense views; the mask layout is broadcast to
/// (batch..., l, s). Returns (out, lse).
pub fn attention_fwd(
    q: (&CpuStorage, &Layout),
    k: (&CpuStorage, &Layout),
    v: (&CpuStorage, &Layout),
    mask: Option<(&CpuStorage, &Layout)>,
    g: AttnGeom,
) -> Result<(CpuStorage, CpuStorage)> {
    macro_rules! run {
        ($var:ident) => {{
            // Operands of another dtype are an error, never a panic.
            let (CpuStorage::$var(qd), CpuStorage::$var(kd), CpuStorage::$var(vd)) = (q.0, k.0, v.0) else {
                return Err(crate::Error::DTypeMismatch {
                    op: "scaled_dot_product_attention",
                    lhs: q.0.dtype(),
                    rhs: k.0.dtype(),
                });
            };
            let (qd, kd, vd) = (dense(qd, q.1), dense(kd, k.1), dense(vd, v.1));
            let mask = match mask {
                Some((CpuStorage::$var(m), l)) => Some(Mask { data: m, layout: l }),
                Some((m, _)) => {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention",
                        lhs: q.0.dtype(),
                        rhs: m.dtype(),
                    });
                }
                None => None,
            };
            let (o, lse) = fwd_t(&qd, &kd, &vd, mask, g);
            Ok((CpuStorage::$var(o), CpuStorage::$var(lse)))
        }};
    }
    match q.0 {
        CpuStorage::F32(_) => run!(F32),
        CpuStorage::F64(_) => run!(F64),
        other => Err(crate::Error::UnsupportedDType {
            op: "scaled_dot_product_attention",
            dtype: other.dtype(),
            device: crate::Device::Cpu,
        }),
    }
}

/// Inputs in order q, k, v, out, dout, lse; all dense-able views of one
/// float dtype (checked by the caller). Returns (dq, dk, dv, dscores).
pub fn attention_bwd(
    t: [(&CpuStorage, &Layout); 6],
    mask: Option<(&CpuStorage, &Layout)>,
    g: AttnGeom,
    want_ds: bool,
) -> Result<[CpuStorage; 4]> {
    macro_rules! run {
        ($var:ident) => {{
            let mut d = Vec::with_capacity(6);
            for (s, l) in t {
                let CpuStorage::$var(x) = s else {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention_bwd",
                        lhs: t[0].0.dtype(),
                        rhs: s.dtype(),
                    });
                };
                d.push(dense(x, l));
            }
            let mask = match mask {
                Some((CpuStorage::$var(m), l)) => Some(Mask { data: m, layout: l }),
                Some((m, _)) => {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention_bwd",
                        lhs: t[0].0.dtype(),
                        rhs: m.dtype(),
                    });
                }
                None => None,
            };
            let saved = Saved { q: &d[0], k: &d[1], v: &d[2], o: &d[3], dout: &d[4], lse: &d[5] };
            let (a, b, c, e) = bwd_t(saved, mask, g, want_ds);
            Ok([CpuStorage::$var(a), CpuStorage::$var(b), CpuStorage::$var(c), CpuStorage::$var(e)])
        }};
    }
    match t[0].0 {
        CpuStorage::F32(_) => run!(F32),
        CpuStorage::F64(_) => run!(F64),
        other => Err(crate::Error::UnsupportedDType {
            op: "scaled_dot_product_attention_bwd",
            dtype: other.dtype(),
            device: crate::Device::Cpu,
        }),
    }
}
