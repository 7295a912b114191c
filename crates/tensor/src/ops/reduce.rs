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

    /// torch.std: √var with the same arguments (a size-1 dim unbiased is
    /// NaN, as torch; the centred two-pass var keeps large offsets exact).
    pub fn std(&self, dims: &[usize], unbiased: bool, keepdim: bool) -> Result<Tensor> {
        self.var(dims, unbiased, keepdim)?.sqrt()
    }

    /// torch.linalg.vector_norm(x, ord, dim, keepdim) for ord = 2, 1, ∞, −∞,
    /// 0 (the count of nonzeros, not differentiable) or any p > 0. At a zero
    /// norm the gradient is torch's subgradient 0; at ∞ ties share it.
    pub fn vector_norm(&self, ord: f64, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let a = self.abs()?;
        if ord == f64::INFINITY {
            return a.amax(dims, keepdim);
        }
        if ord == f64::NEG_INFINITY {
            return a.amin(dims, keepdim);
        }
        if ord == 0.0 {
            return a.detach().ne(&a.scalar_like(0.0)?)?.sum(dims, keepdim);
        }
        if ord == 1.0 {
            return a.sum(dims, keepdim);
        }
        if ord.is_nan() || ord < 0.0 {
            return Err(arg_err("vector_norm", format!("ord must be 0, > 0, inf or -inf, got {ord}")));
        }
        let s = if ord == 2.0 { self.sqr()? } else { a.powf(ord)? }.sum(dims, keepdim)?;
        // The root's derivative is infinite at 0: where s = 0 it is taken of
        // 1 instead and its output discarded, so 0 (not ∞·0 = NaN) flows back.
        let zero = s.scalar_like(0.0)?;
        let at_zero = s.eq(&zero)?;
        let safe = Tensor::where_cond(&at_zero, &s.scalar_like(1.0)?, &s)?;
        let root = if ord == 2.0 { safe.sqrt()? } else { safe.powf(1.0 / ord)? };
        Tensor::where_cond(&at_zero, &zero, &root)
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

    /// torch.amax over `dims` (all when empty). As torch, the gradient is
    /// split evenly among tied maxima (k ties get g/k each); `max_dim`
    /// gives it all to the returned index instead.
    pub fn amax(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.extreme_split(dims, keepdim, ReduceOp::Max)
    }

    /// torch.amin: as `amax`, for the minimum.
    pub fn amin(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.extreme_split(dims, keepdim, ReduceOp::Min)
    }

    /// torch's `x.max()`: the largest element, the gradient split among ties.
    pub fn max_all(&self) -> Result<Tensor> {
        self.amax(&[], false)
    }

    /// torch's `x.min()`.
    pub fn min_all(&self) -> Result<Tensor> {
        self.amin(&[], false)
    }

    fn extreme_split(&self, dims: &[usize], keepdim: bool, op: ReduceOp) -> Result<Tensor> {
        let dims = self.reduce_dims(op.name(), dims)?;
        let (s, _) = self.storage().reduce(self.layout(), &dims, op)?;
        let keep = self.reduced_shape(&dims, true);
        let t = Tensor::from_op(s, &keep, || Op::Amax(self.clone()));
        if keepdim { Ok(t) } else { t.reshape(&self.reduced_shape(&dims, false)) }
    }

    /// log Σ exp over `dims`, stable (the max is subtracted, as a constant).
    pub fn logsumexp(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let m = self.detach().amax(dims, true)?;
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

/// amax/amin: g/k to each of the k elements equal to the extreme (`y` has
/// the keepdim shape). The 0/1 tie mask is a constant, so the rule is
/// linear in g and its own backward is exact.
pub(crate) fn amax_backward(x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let ties = x.eq(&y.detach().broadcast_as(x.shape())?)?;
    let count = ties.sum_to_shape(y.shape())?;
    Ok(vec![Some(g.div(&count)?.broadcast_as(x.shape())?.mul(&ties)?)])
}
