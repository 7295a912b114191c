//! batch_norm as torch.nn.functional.batch_norm. Training normalises with
//! the biased batch variance and updates running_var with the unbiased one
//! (momentum m: r ← (1 − m)·r + m·stat). The forward and the first backward
//! are fused kernels; when a graph of the backward is requested (double
//! backward), the same gradient is written with differentiable Tensor ops.

use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::{Tensor, autograd};

/// Values saved by the training forward for the backward.
#[derive(Clone)]
pub(crate) struct BatchNormSaved {
    pub x: Tensor,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub mean: Tensor,
    pub invstd: Tensor,
    pub eps: f64,
}

/// Shape (1, C, 1, …) for broadcasting a per-channel vector against x.
pub(crate) fn per_channel(x: &Tensor, v: &Tensor) -> Result<Tensor> {
    let mut s = vec![1; x.rank()];
    s[1] = x.shape()[1];
    v.reshape(&s)
}

/// Every dim but the channel dim.
pub(crate) fn stat_dims(x: &Tensor) -> Vec<usize> {
    (0..x.rank()).filter(|&d| d != 1).collect()
}

impl Tensor {
    /// torch.nn.functional.batch_norm on (N, C, *) input. `training` uses
    /// batch statistics (and updates the running ones in place when given);
    /// otherwise the running statistics are required and used.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm";
        if self.rank() < 2 {
            return Err(shape_err(OP, format!("input must be (N, C, ...), got {:?}", self.shape())));
        }
        let c = self.shape()[1];
        for (name, t) in
            [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)]
        {
            if let Some(t) = t {
                check_same(OP, self, t)?;
                if t.shape() != [c] {
                    return Err(shape_err(
                        OP,
                        format!("{name} must have shape [{c}] for input {:?}, got {:?}", self.shape(), t.shape()),
                    ));
                }
            }
        }
        if !training {
            let (Some(rm), Some(rv)) = (running_mean, running_var) else {
                return Err(arg_err(OP, "evaluation mode needs running_mean and running_var"));
            };
            let invstd = rv.add_scalar(eps)?.rsqrt()?;
            return self.affine_per_channel(rm, &invstd, weight, bias);
        }
        let count = self.numel() / c.max(1);
        if count <= 1 {
            return Err(shape_err(
                OP,
                format!("expected more than 1 value per channel when training, got input {:?}", self.shape()),
            ));
        }
        let (mean, var) = self.storage().batch_norm_stats(self.layout())?;
        let mean = Tensor::from_storage(mean, &[c]);
        let var = Tensor::from_storage(var, &[c]);
        let invstd = var.add_scalar(eps)?.rsqrt()?;
        {
            let _g = autograd::no_grad();
            if let Some(rm) = running_mean {
                rm.assign(&rm.affine(1.0 - momentum, 0.0)?.add(&mean.mul_scalar(momentum)?)?)?;
            }
            if let Some(rv) = running_var {
                let unbiased = var.mul_scalar(count as f64 / (count as f64 - 1.0))?;
                rv.assign(&rv.affine(1.0 - momentum, 0.0)?.add(&unbiased.mul_scalar(momentum)?)?)?;
            }
        }
        let (ws, bs) = (weight.map(|t| t.storage()), bias.map(|t| t.storage()));
        let y = self.storage().batch_norm_apply(
            self.layout(),
            &mean.storage(),
            &invstd.storage(),
            ws.as_deref(),
            bs.as_deref(),
        )?;
        let saved = BatchNormSaved { x: self.clone(), weight: weight.cloned(), bias: bias.cloned(), mean, invstd, eps };
        Ok(Tensor::from_op(y, self.shape(), || Op::BatchNorm(Box::new(saved))))
    }

    /// (x − mean)·invstd·w + b with per-channel vectors, in Tensor ops.
    fn affine_per_channel(
        &self,
        mean: &Tensor,
        invstd: &Tensor,
        w: Option<&Tensor>,
        b: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut y = self.sub(&per_channel(self, mean)?)?.mul(&per_channel(self, invstd)?)?;
        if let Some(w) = w {
            y = y.mul(&per_channel(self, w)?)?;
        }
        if let Some(b) = b {
            y = y.add(&per_channel(self, b)?)?;
        }
        Ok(y)
    }
}

/// A normalisation's recorded inputs: x, then weight and bias when given.
pub(crate) fn affine_inputs<'a>(x: &'a Tensor, w: &'a Option<Tensor>, b: &'a Option<Tensor>) -> Vec<&'a Tensor> {
    std::iter::once(x).chain(w.as_ref()).chain(b.as_ref()).collect()
}

/// (dx, dw, db) as the gradients of `affine_inputs`' list.
pub(crate) fn affine_grads(
    (dx, dw, db): (Tensor, Tensor, Tensor),
    w: &Option<Tensor>,
    b: &Option<Tensor>,
) -> Vec<Option<Tensor>> {
    let mut out = vec![Some(dx)];
    if w.is_some() {
        out.push(Some(dw));
    }
    if b.is_some() {
        out.push(Some(db));
    }
    out
}

impl BatchNormSaved {
    pub fn inputs(&self) -> Vec<&Tensor> {
        affine_inputs(&self.x, &self.weight, &self.bias)
    }

    pub fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let grads = if autograd::is_grad_enabled() { self.backward_composed(g)? } else { self.backward_fused(g)? };
        Ok(affine_grads(grads, &self.weight, &self.bias))
    }

    fn backward_fused(&self, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let x = &self.x;
        let ws = self.weight.as_ref().map(|w| w.storage());
        let (dx, dw, db) = x.storage().batch_norm_bwd(
            x.layout(),
            &g.storage(),
            g.layout(),
            &self.mean.storage(),
            &self.invstd.storage(),
            ws.as_deref(),
        )?;
        let c = [x.shape()[1]];
        Ok((Tensor::from_storage(dx, x.shape()), Tensor::from_storage(dw, &c), Tensor::from_storage(db, &c)))
    }

    /// The same gradient from differentiable ops: statistics recomputed from
    /// x so that their dependence on x is part of the graph.
    fn backward_composed(&self, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let x = &self.x;
        let dims = stat_dims(x);
        let mean = x.mean(&dims, true)?;
        let invstd = x.var(&dims, false, true)?.add_scalar(self.eps)?.rsqrt()?;
        let xhat = x.sub(&mean)?.mul(&invstd)?;
        let dxhat = match &self.weight {
            Some(w) => g.mul(&per_channel(x, w)?)?,
            None => g.clone(),
        };
        let a = dxhat.mean(&dims, true)?;
        let b = dxhat.mul(&xhat)?.mean(&dims, true)?;
        let dx = dxhat.sub(&a)?.sub(&xhat.mul(&b)?)?.mul(&invstd)?;
        let dw = g.mul(&xhat)?.sum(&dims, false)?;
        let db = g.sum(&dims, false)?;
        Ok((dx, dw, db))
    }
}
