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
        let grouped = self.reshape(&[n, groups, usize::MAX])?;
        let mean = grouped.mean(&[2], true)?;
        let invstd = grouped.var(&[2], false, true)?.add_scalar(eps)?.rsqrt()?;
        let mut y = grouped.sub(&mean)?.mul(&invstd)?.reshape(self.shape())?;
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
