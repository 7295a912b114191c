//! scaled_dot_product_attention as one fused op (torch semantics: additive
//! float mask broadcast to (…, L, S), top-left aligned causal mask, default
//! scale 1/√E). The fused backward recomputes probabilities from the saved
//! log-sum-exp; when a graph of the backward is requested the same gradient
//! is written with differentiable Tensor ops.

use crate::backend::{AttnGeom, Storage};
use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::{Tensor, autograd};

#[derive(Clone)]
pub(crate) struct AttentionSaved {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub mask: Option<Tensor>,
    /// The forward output, detached (the node itself must not be saved: cycle).
    pub out: Tensor,
    pub lse: Tensor,
    pub geom: AttnGeom,
}

/// (batch…, L, S): the shape of the scores (and of a broadcast mask).
fn scores_shape(q: &Tensor, l: usize, s: usize) -> Vec<usize> {
    let mut full = q.shape()[..q.rank() - 2].to_vec();
    full.extend_from_slice(&[l, s]);
    full
}

impl Tensor {
    /// torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask,
    /// is_causal, scale) for q (…, L, E), k (…, S, E), v (…, S, Ev) with equal
    /// leading dims. `mask` is additive (use -inf to block) and broadcasts to
    /// (…, L, S); it may not be combined with `causal` (as in torch). A 0/1
    /// "keep" mask (torch's boolean attn_mask) must first go through
    /// `Tensor::additive_mask`: added as is, 0/1 would block nothing.
    pub fn scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        const OP: &str = "scaled_dot_product_attention";
        check_same(OP, q, k)?;
        check_same(OP, q, v)?;
        let r = q.rank();
        if r < 2 || k.rank() != r || v.rank() != r {
            return Err(shape_err(
                OP,
                format!("q, k, v need the same rank >= 2, got {:?}, {:?}, {:?}", q.shape(), k.shape(), v.shape()),
            ));
        }
        let batch = &q.shape()[..r - 2];
        if &k.shape()[..r - 2] != batch || &v.shape()[..r - 2] != batch {
            return Err(shape_err(
                OP,
                format!("leading dims of q {:?}, k {:?}, v {:?} must match", q.shape(), k.shape(), v.shape()),
            ));
        }
        let (l, e, s, ev) = (q.shape()[r - 2], q.shape()[r - 1], k.shape()[r - 2], v.shape()[r - 1]);
        if k.shape()[r - 1] != e || v.shape()[r - 2] != s {
            return Err(shape_err(
                OP,
                format!("k must be (…, S, {e}) and v (…, S, Ev) with one S: got k {:?}, v {:?}", k.shape(), v.shape()),
            ));
        }
        if causal && mask.is_some() {
            return Err(arg_err(OP, "an explicit mask and causal = true cannot be combined"));
        }
        let b: usize = batch.iter().product();
        // torch multiplies q and k by √scale before their product, so with
        // E = 0 the scores are exactly 0 whatever the scale (the default
        // 1/√0 = ∞ included): any finite scale gives that, where ∞ · 0 = NaN.
        let scale = if e == 0 { 1.0 } else { scale.unwrap_or(1.0 / (e as f64).sqrt()) };
        let geom = AttnGeom { b, l, s, e, ev, scale, causal };
        let mask_layout = match mask {
            Some(m) => {
                check_same(OP, q, m)?;
                Some(m.layout().broadcast_as(OP, &scores_shape(q, l, s))?)
            }
            None => None,
        };
        let (q3, k3, v3) = (q.reshape(&[b, l, e])?, k.reshape(&[b, s, e])?, v.reshape(&[b, s, ev])?);
        let (qs, ks, vs) = (q3.storage(), k3.storage(), v3.storage());
        let ms = mask.map(|m| m.storage());
        let mask_arg = ms.as_deref().zip(mask_layout.as_ref());
        let (out, lse) =
            Storage::attention_fwd((&qs, q3.layout()), (&ks, k3.layout()), (&vs, v3.layout()), mask_arg, geom)?;
        let mut out_shape = batch.to_vec();
        out_shape.extend_from_slice(&[l, ev]);
        let out = Tensor::from_storage(out, &out_shape);
        let lse = Tensor::from_storage(lse, &[b, l]);
        let saved = || AttentionSaved {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            mask: mask.cloned(),
            out: out.clone(),
            lse,
            geom,
        };
        Ok(out.view(out.layout().clone(), || Op::Attention(Box::new(saved()))))
    }
}

impl Tensor {
    /// scaled_dot_product_attention(…, enable_gqa=True): q (…, Hq, L, E)
    /// with k, v (…, Hkv, S, ·) where Hkv divides Hq; key/value head h
    /// serves query heads h·Hq/Hkv … (h + 1)·Hq/Hkv − 1, as torch's
    /// repeat_interleave (the gradients of the shared heads are summed).
    pub fn scaled_dot_product_attention_gqa(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let r = q.rank();
        let heads = |t: &Tensor| if t.rank() == r && r >= 3 { t.shape()[r - 3] } else { 0 };
        let (hq, hkv) = (heads(q), heads(k));
        if hkv == 0 || hq % hkv != 0 || heads(v) != hkv {
            return Err(shape_err(
                "scaled_dot_product_attention",
                format!(
                    "enable_gqa needs q (…, Hq, L, E), k and v (…, Hkv, S, ·) with Hkv dividing Hq, got {:?}, {:?}, {:?}",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            ));
        }
        let repeat = |t: &Tensor| -> Result<Tensor> {
            if hq == hkv {
                return Ok(t.clone());
            }
            let s = t.shape();
            let mut wide = s[..r - 2].to_vec();
            wide.push(hq / hkv);
            wide.extend_from_slice(&s[r - 2..]);
            let mut out = s.to_vec();
            out[r - 3] = hq;
            t.unsqueeze(r - 2)?.broadcast_as(&wide)?.reshape(&out)
        };
        Self::scaled_dot_product_attention(q, &repeat(k)?, &repeat(v)?, mask, causal, scale)
    }

    /// An additive attention mask from a keep mask (nonzero = may attend,
    /// torch's boolean attn_mask): 0 where kept, −inf elsewhere.
    pub fn additive_mask(keep: &Tensor) -> Result<Tensor> {
        let zero = keep.scalar_like(0.0)?;
        Tensor::where_cond(keep, &zero, &keep.scalar_like(f64::NEG_INFINITY)?)?.broadcast_as(keep.shape())?.contiguous()
    }
}

impl AttentionSaved {
    pub fn inputs(&self) -> Vec<&Tensor> {
        [&self.q, &self.k, &self.v].into_iter().chain(self.mask.as_ref()).collect()
    }

    pub fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let grads = if autograd::is_grad_enabled() { self.backward_composed(g)? } else { self.backward_fused(g)? };
        Ok(grads.into_iter().take(self.inputs().len()).map(Some).collect())
    }

    fn backward_fused(&self, g: &Tensor) -> Result<Vec<Tensor>> {
        let AttnGeom { b, l, s, e, ev, .. } = self.geom;
        let want_ds = self.mask.as_ref().is_some_and(|m| m.tracks_grad());
        let flat = |t: &Tensor, r: usize, c: usize| t.reshape(&[b, r, c]);
        let ts = [
            flat(&self.q, l, e)?,
            flat(&self.k, s, e)?,
            flat(&self.v, s, ev)?,
            flat(&self.out, l, ev)?,
            flat(g, l, ev)?,
            self.lse.clone(),
        ];
        let guards: Vec<_> = ts.iter().map(|t| t.storage()).collect();
        let args = [0, 1, 2, 3, 4, 5].map(|i| (&*guards[i], ts[i].layout()));
        let ms = self.mask.as_ref().map(|m| m.storage());
        let full = scores_shape(&self.q, l, s);
        let ml = match &self.mask {
            Some(m) => Some(m.layout().broadcast_as("scaled_dot_product_attention", &full)?),
            None => None,
        };
        let [dq, dk, dv, ds] = Storage::attention_bwd(args, ms.as_deref().zip(ml.as_ref()), self.geom, want_ds)?;
        let mut out = vec![
            Tensor::from_storage(dq, self.q.shape()),
            Tensor::from_storage(dk, self.k.shape()),
            Tensor::from_storage(dv, self.v.shape()),
        ];
        if let Some(m) = &self.mask {
            let dmask =
                if want_ds { Tensor::from_storage(ds, &full).sum_to_shape(m.shape())? } else { m.zeros_like()? };
            out.push(dmask);
        }
        Ok(out)
    }

    /// Scores → probabilities → gradients, all in differentiable ops.
    fn backward_composed(&self, g: &Tensor) -> Result<Vec<Tensor>> {
        let (q, k, v) = (&self.q, &self.k, &self.v);
        let AttnGeom { l, s, scale, causal, .. } = self.geom;
        let mut scores = q.matmul(&k.t()?)?.mul_scalar(scale)?;
        if let Some(m) = &self.mask {
            scores = scores.add(m)?;
        }
        if causal {
            let blocked: Vec<f64> = (0..l * s).map(|i| if i % s > i / s { f64::NEG_INFINITY } else { 0.0 }).collect();
            scores = scores.add(&Tensor::from_f64(&blocked, &[l, s], q.dtype(), q.device())?)?;
        }
        // A row with every key masked has P = 0 (as the fused forward): its
        // scores are replaced by 0 before the softmax, so that no NaN
        // reaches the graph, and its probabilities are then zeroed.
        let last = scores.rank() - 1;
        let dead = scores.detach().amax(&[last], true)?.eq(&scores.scalar_like(f64::NEG_INFINITY)?)?;
        let zero = scores.scalar_like(0.0)?;
        let p = Tensor::where_cond(&dead, &zero, &Tensor::where_cond(&dead, &zero, &scores)?.softmax(last)?)?;
        let dv = p.t()?.matmul(g)?;
        let dp = g.matmul(&v.t()?)?;
        let ds = p.mul(&dp.sub(&dp.mul(&p)?.sum(&[last], true)?)?)?;
        let dq = ds.matmul(k)?.mul_scalar(scale)?;
        let dk = ds.t()?.matmul(q)?.mul_scalar(scale)?;
        let mut out = vec![dq, dk, dv];
        if let Some(m) = &self.mask {
            out.push(ds.sum_to_shape(m.shape())?);
        }
        Ok(out)
    }
}
