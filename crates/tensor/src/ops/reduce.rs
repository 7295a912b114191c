//! Reductions over any set of dims with keepdim: sum, mean, var, max/min
//! (values and indices), logsumexp; and sum_to_shape, the adjoint of
//! broadcasting.

use crate::Tensor;
use crate::error::{Result, arg_err};
use crate::op::Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    pub fn name(&self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

impl Tensor {
    /// Sorted, distinct, in-range dims or a typed error; an empty list
    /// means every dim (as torch does for `dim=[]`).
    fn reduce_dims(&self, op: &'static str, dims: &[usize]) -> Result<Vec<usize>> {
        if dims.is_empty() {
            return Ok((0..self.rank()).collect());
        }
        let mut d = dims.to_vec();
        d.sort_unstable();
        d.dedup();
        if d.len() != dims.len() || d.last().is_some_and(|&x| x >= self.rank()) {
            return Err(arg_err(op, format!("dims {dims:?} are invalid for shape {:?}", self.shape())));
        }
        Ok(d)
    }

    /// Output shape: reduced dims dropped, or kept as 1.
    fn reduced_shape(&self, dims: &[usize], keepdim: bool) -> Vec<usize> {
        let s = self.shape();
        (0..self.rank())
            .filter_map(|d| match (dims.contains(&d), keepdim) {
                (false, _) => Some(s[d]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect()
    }

    /// torch.sum over `dims`.
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let dims = self.reduce_dims("sum", dims)?;
        let (s, _) = self.storage().reduce(self.layout(), &dims, ReduceOp::Sum)?;
        let keep = self.reduced_shape(&dims, true);
        let t = Tensor::from_op(s, &keep, || Op::Sum(self.clone()));
        if keepdim { Ok(t) } else { t.reshape(&self.reduced_shape(&dims, false)) }
    }

    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&(0..self.rank()).collect::<Vec<_>>(), false)
    }

    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let n: usize = self.reduce_dims("mean", dims)?.iter().map(|&d| self.shape()[d]).product();
        self.sum(dims, keepdim)?.mul_scalar(1.0 / n as f64)
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// torch.var over `dims`; `unbiased` divides by n − 1 (torch's default).
    pub fn var(&self, dims: &[usize], unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let n: usize = self.reduce_dims("var", dims)?.iter().map(|&d| self.shape()[d]).product();
        let centered = self.sub(&self.mean(dims, true)?)?;
        let denom = if unbiased { n as f64 - 1.0 } else { n as f64 };
        centered.sqr()?.sum(dims, keepdim)?.mul_scalar(1.0 / denom)
    }

    fn extreme_dim(&self, dim: usize, keepdim: bool, op: ReduceOp) -> Result<(Tensor, Tensor)> {
        let dims = self.reduce_dims(op.name(), &[dim])?;
        let (_, idx) = self.storage().reduce(self.layout(), &dims, op)?;
        let keep = self.reduced_shape(&dims, true);
        let idx = Tensor::from_storage(idx, &keep);
        // Values through gather, so the gradient goes to the argmax only.
        let vals = self.gather(dim, &idx)?;
        if keepdim {
            Ok((vals, idx))
        } else {
            let s = self.reduced_shape(&dims, false);
            Ok((vals.reshape(&s)?, idx.reshape(&s)?))
        }
    }

    /// torch.max(x, dim): (values, i64 indices of the first maximum).
    pub fn max_dim(&self, dim: usize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extreme_dim(dim, keepdim, ReduceOp::Max)
    }

    pub fn min_dim(&self, dim: usize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.extreme_dim(dim, keepdim, ReduceOp::Min)
    }

    pub fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        Ok(self.max_dim(dim, keepdim)?.1)
    }

    pub fn argmin(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        Ok(self.min_dim(dim, keepdim)?.1)
    }

    /// Max over several dims (torch.amax). Unlike torch.amax, which splits the
    /// gradient among ties, the gradient goes to the first maximum.
    pub fn max(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.extreme_multi(dims, keepdim, ReduceOp::Max)
    }

    pub fn min(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.extreme_multi(dims, keepdim, ReduceOp::Min)
    }

    fn extreme_multi(&self, dims: &[usize], keepdim: bool, op: ReduceOp) -> Result<Tensor> {
        let dims = self.reduce_dims(op.name(), dims)?;
        // Move the reduced dims last, merge them, reduce the one dim.
        let mut order: Vec<usize> = (0..self.rank()).filter(|d| !dims.contains(d)).collect();
        order.extend_from_slice(&dims);
        let kept = self.rank() - dims.len();
        let flat = self.permute(&order)?.flatten_from(kept)?;
        let (v, _) = flat.extreme_dim(kept, false, op)?;
        v.reshape(&self.reduced_shape(&dims, keepdim))
    }

    /// Merges dims `start..` into one (a trailing 1 when there are none).
    fn flatten_from(&self, start: usize) -> Result<Tensor> {
        let mut s = self.shape()[..start].to_vec();
        s.push(self.shape()[start..].iter().product());
        self.reshape(&s)
    }

    /// log Σ exp over `dims`, stable (the max is subtracted, as a constant).
    pub fn logsumexp(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let m = self.detach().max(dims, true)?;
        // Rows of -inf stay -inf rather than NaN.
        let m = Tensor::where_cond(&m.abs()?.eq(&m.scalar_like(f64::INFINITY)?)?, &m.zeros_like()?, &m)?;
        let s = self.sub(&m)?.exp()?.sum(dims, true)?.log()?.add(&m)?;
        if keepdim { Ok(s) } else { s.reshape(&self.reduced_shape(&self.reduce_dims("logsumexp", dims)?, false)) }
    }

    /// Sums a broadcast result back to `shape` (the adjoint of broadcast_as).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if crate::layout::broadcast_shapes("sum_to_shape", shape, self.shape()).ok().as_deref() != Some(self.shape()) {
            return Err(arg_err("sum_to_shape", format!("{shape:?} does not broadcast to {:?}", self.shape())));
        }
        let extra = self.rank() - shape.len();
        let dims: Vec<usize> =
            (0..self.rank()).filter(|&d| d < extra || (shape[d - extra] == 1 && self.shape()[d] != 1)).collect();
        let s = self.sum(&dims, true)?;
        s.reshape(shape)
    }
}

pub(crate) fn sum_backward(x: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    // g has the keepdim shape: broadcasting restores x's shape.
    Ok(vec![Some(g.broadcast_as(x.shape())?)])
}
