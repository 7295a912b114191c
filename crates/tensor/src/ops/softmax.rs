//! softmax and log_softmax along one dim: fused, max-subtracted forward;
//! the backward is written with Tensor ops (so it is differentiable again).

use crate::Tensor;
use crate::error::Result;
use crate::layout::Layout;
use crate::op::Op;

impl Tensor {
    fn softmax_impl(&self, dim: usize, log: bool) -> Result<Tensor> {
        let op = if log { "log_softmax" } else { "softmax" };
        self.dim_size(op, dim)?;
        let s = self.storage().softmax(self.layout(), dim, log)?;
        // The kernel writes rows with `dim` innermost: view it back.
        let mut order: Vec<usize> = (0..self.rank()).filter(|&d| d != dim).collect();
        order.push(dim);
        let permuted: Vec<usize> = order.iter().map(|&d| self.shape()[d]).collect();
        let mut inverse = vec![0; order.len()];
        for (i, &d) in order.iter().enumerate() {
            inverse[d] = i;
        }
        let layout = Layout::contiguous(&permuted).permute(&inverse);
        let out = Tensor::from_storage(s, &permuted);
        let x = self.clone();
        Ok(out.view(layout, || if log { Op::LogSoftmax(x, dim) } else { Op::Softmax(x, dim) }))
    }

    /// torch.softmax along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl(dim, false)
    }

    /// torch.log_softmax along `dim`.
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl(dim, true)
    }
}

/// dx = y ⊙ (g − Σ g⊙y)
pub(crate) fn softmax_backward(y: &Tensor, dim: usize, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let s = g.mul(y)?.sum(&[dim], true)?;
    Ok(vec![Some(y.mul(&g.sub(&s)?)?)])
}

/// dx = g − exp(y) ⊙ Σ g
pub(crate) fn log_softmax_backward(y: &Tensor, dim: usize, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let s = g.sum(&[dim], true)?;
    Ok(vec![Some(g.sub(&y.exp()?.mul(&s)?)?)])
}
