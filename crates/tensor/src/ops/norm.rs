//! layer_norm and group_norm, composed from differentiable primitives
//! (biased variance, as torch).

use crate::Tensor;
use crate::error::{Result, arg_err, shape_err};

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
        }
        // Normalising each (sample, group) over its C/G·spatial values is
        // batch_norm's training normalisation of the (1, N·G, −1) view, with
        // one "channel" per group: the fused batch_norm kernels (forward,
        // backward, and the composed rule for double backward) on every
        // backend, instead of ten composed passes. torch's CPU group_norm
        // once worked the same way.
        // batch_norm refuses one value per channel; torch's group_norm
        // normalises a lone value to 0, which the composed form does.
        let per_group = self.numel() / (n * groups).max(1);
        let mut y = if per_group > 1 {
            let grouped = self.reshape(&[1, n * groups, per_group])?;
            grouped.batch_norm(None, None, None, None, true, 0.0, eps)?.reshape(self.shape())?
        } else {
            let grouped = self.reshape(&[n, groups, usize::MAX])?;
            let mean = grouped.mean(&[2], true)?;
            let invstd = grouped.var(&[2], false, true)?.add_scalar(eps)?.rsqrt()?;
            grouped.sub(&mean)?.mul(&invstd)?.reshape(self.shape())?
        };
        let mut per_channel = vec![1; self.rank()];
        per_channel[1] = c;
        if let Some(w) = weight {
            y = y.mul(&w.reshape(&per_channel)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&b.reshape(&per_channel)?)?;
        }
        Ok(y)
    }
}
