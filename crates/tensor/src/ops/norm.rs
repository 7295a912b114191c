//! layer_norm and group_norm, composed from differentiable primitives
//! (biased variance, as torch).

use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::ops::batch_norm::{affine_grads, affine_inputs, per_channel, stat_dims};
use crate::ops::elementwise::check_same;
use crate::{DType, Tensor, autograd};

impl Tensor {
    /// torch.nn.functional.layer_norm over the trailing `normalized_shape`
    /// dims; weight and bias (if given) have shape `normalized_shape`.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let k = normalized_shape.len();
        if k == 0 || k > self.rank() || &self.shape()[self.rank() - k..] != normalized_shape {
            return Err(shape_err(
                "layer_norm",
                format!("input {:?} does not end with normalized_shape {normalized_shape:?}", self.shape()),
            ));
        }
        for t in [weight, bias].into_iter().flatten() {
            if t.shape() != normalized_shape {
                return Err(shape_err(
                    "layer_norm",
                    format!("weight/bias must have shape {normalized_shape:?}, got {:?}", t.shape()),
                ));
            }
        }
        let dims: Vec<usize> = (self.rank() - k..self.rank()).collect();
        let mean = self.mean(&dims, true)?;
        let invstd = self.var(&dims, false, true)?.add_scalar(eps)?.rsqrt()?;
        let mut y = self.sub(&mean)?.mul(&invstd)?;
        if let Some(w) = weight {
            y = y.mul(w)?;
        }
        if let Some(b) = bias {
            y = y.add(b)?;
        }
        Ok(y)
    }

    /// torch.nn.functional.group_norm on (N, C, *) with `groups` dividing C;
    /// weight and bias (if given) have shape [C].
    pub fn group_norm(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(shape_err("group_norm", format!("input must be (N, C, ...), got {:?}", self.shape())));
        }
        let (n, c) = (self.shape()[0], self.shape()[1]);
        if groups == 0 || c % groups != 0 {
            return Err(arg_err("group_norm", format!("groups = {groups} must divide channels {c}")));
        }
        for t in [weight, bias].into_iter().flatten() {
            if t.shape() != [c] {
                return Err(shape_err("group_norm", format!("weight/bias must have shape [{c}], got {:?}", t.shape())));
            }
            check_same("group_norm", self, t)?;
        }
        let per_group = self.numel() / (n * groups).max(1);
        if per_group > 1 && matches!(self.dtype(), DType::F32 | DType::F64) {
            // The CPU's fused kernels: statistics, then normalise with the affine.
            let (ws, bs) = (weight.map(|t| t.storage()), bias.map(|t| t.storage()));
            let fused = self.storage().group_norm_fwd(self.layout(), groups, ws.as_deref(), bs.as_deref(), eps)?;
            if let Some((y, mean, rstd)) = fused {
                let stats = [n, groups];
                let saved = GroupNormSaved {
                    x: self.clone(),
                    weight: weight.cloned(),
                    bias: bias.cloned(),
                    mean: Tensor::from_storage(mean, &stats),
                    rstd: Tensor::from_storage(rstd, &stats),
                    groups,
                    eps,
                };
                return Ok(Tensor::from_op(y, self.shape(), || Op::GroupNorm(Box::new(saved))));
            }
        }
        // The GPUs: normalising each (sample, group) over its C/G·spatial
        // values is batch_norm's training normalisation of the (1, N·G, −1)
        // view, one "channel" per group, so batch_norm's fused kernels serve
        // (torch's CPU group_norm once worked the same way). batch_norm
        // refuses one value per channel; torch's group_norm normalises a
        // lone value to 0, which the composed form does.
        let mut y = if per_group > 1 {
            let grouped = self.reshape(&[1, n * groups, per_group])?;
            grouped.batch_norm(None, None, None, None, true, 0.0, eps)?.reshape(self.shape())?
        } else {
            normalized_groups(self, groups, eps)?.0
        };
        if let Some(w) = weight {
            y = y.mul(&per_channel(self, w)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&per_channel(self, b)?)?;
        }
        Ok(y)
    }
}

/// (x̂ of x's shape, rstd (N, G, 1)) in differentiable ops: x normalised
/// over each (sample, group) with the biased variance.
fn normalized_groups(x: &Tensor, groups: usize, eps: f64) -> Result<(Tensor, Tensor)> {
    let grouped = x.reshape(&[x.shape()[0], groups, usize::MAX])?;
    let mean = grouped.mean(&[2], true)?;
    let rstd = grouped.var(&[2], false, true)?.add_scalar(eps)?.rsqrt()?;
    Ok((grouped.sub(&mean)?.mul(&rstd)?.reshape(x.shape())?, rstd))
}

/// What the fused CPU forward saves for its backward.
#[derive(Debug)]
pub struct GroupNormSaved {
    x: Tensor,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    /// Per (sample, group), (N, G).
    mean: Tensor,
    rstd: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNormSaved {
    pub fn inputs(&self) -> Vec<&Tensor> {
        affine_inputs(&self.x, &self.weight, &self.bias)
    }

    /// The fused kernel for a first backward; differentiable ops (the
    /// statistics recomputed from x) when a graph of the backward is asked for.
    pub fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let grads = match autograd::is_grad_enabled() {
            true => self.backward_composed(g)?,
            false => self.backward_fused(g)?,
        };
        Ok(affine_grads(grads, &self.weight, &self.bias))
    }

    fn backward_fused(&self, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let x = &self.x;
        let ws = self.weight.as_ref().map(|w| w.storage());
        let fused = x.storage().group_norm_bwd(
            x.layout(),
            &g.storage(),
            g.layout(),
            self.groups,
            &self.mean.storage(),
            &self.rstd.storage(),
            ws.as_deref(),
        )?;
        match fused {
            Some((dx, dw, db)) => {
                let c = [x.shape()[1]];
                Ok((Tensor::from_storage(dx, x.shape()), Tensor::from_storage(dw, &c), Tensor::from_storage(db, &c)))
            }
            None => self.backward_composed(g),
        }
    }

    fn backward_composed(&self, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let x = &self.x;
        let (n, groups) = (x.shape()[0], self.groups);
        let (xhat, rstd) = normalized_groups(x, groups, self.eps)?;
        let dxhat = match &self.weight {
            Some(w) => g.mul(&per_channel(x, w)?)?,
            None => g.clone(),
        };
        let grouped = |t: &Tensor| t.reshape(&[n, groups, usize::MAX]);
        let (dg, xg) = (grouped(&dxhat)?, grouped(&xhat)?);
        let a = dg.mean(&[2], true)?;
        let b = dg.mul(&xg)?.mean(&[2], true)?;
        let dx = dg.sub(&a)?.sub(&xg.mul(&b)?)?.mul(&rstd)?.reshape(x.shape())?;
        let dims = stat_dims(x);
        let dw = g.mul(&xhat)?.sum(&dims, false)?;
        let db = g.sum(&dims, false)?;
        Ok((dx, dw, db))
    }
}
