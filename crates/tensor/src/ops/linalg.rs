//! torch.linalg.inv and torch.linalg.slogdet for small square matrices
//! (…, n, n). On every backend the values come from the host's f64 LU
//! (`backend/cpu/linalg.rs`): flows need these for a c × c weight with c at
//! most a few dozen, where one copy each way is cheaper than any kernel
//! chain, and f64 keeps log|det| exact where f32 LU would drift. The
//! gradient rules are written with recorded ops, so they are
//! differentiable again: d log|det A| = A⁻ᵀ, d(A⁻¹) = −A⁻ᵀ G A⁻ᵀ.

use crate::Tensor;
use crate::error::{Result, arg_err, shape_err};
use crate::linalg;
use crate::op::Op;

/// (batch, n) of a (…, n, n) float tensor.
fn square(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    let s = x.shape();
    if s.len() < 2 || s[s.len() - 1] != s[s.len() - 2] {
        return Err(shape_err(op, format!("expects square matrices (…, n, n), got {s:?}")));
    }
    if !x.dtype().is_float() {
        return Err(arg_err(op, format!("expects a float tensor, got {:?} of shape {s:?}", x.dtype())));
    }
    let n = s[s.len() - 1];
    Ok((x.numel() / (n * n).max(1), n))
}

impl Tensor {
    /// The inverse of each matrix (torch.linalg.inv); an error names the
    /// first singular one.
    pub fn inverse(&self) -> Result<Tensor> {
        let (batch, n) = square("inverse", self)?;
        let a = self.try_to_vec_f64()?;
        let mut out = Vec::with_capacity(a.len());
        for b in 0..batch {
            let inv = linalg::inverse(&a[b * n * n..(b + 1) * n * n], n)
                .map_err(|_| arg_err("inverse", format!("matrix {b} of {:?} is singular", self.shape())))?;
            out.extend(inv);
        }
        let t = Tensor::from_f64(&out, self.shape(), self.dtype(), self.device())?;
        Ok(t.with_op(|| Op::Inverse(self.clone())))
    }

    /// (sign, log|det|) of each matrix, shaped like the batch dims
    /// (torch.linalg.slogdet): (0, −∞) for a singular one. Only log|det| is
    /// differentiable (the sign is piecewise constant).
    pub fn slogdet(&self) -> Result<(Tensor, Tensor)> {
        let (batch, n) = square("slogdet", self)?;
        let a = self.try_to_vec_f64()?;
        let (signs, logs): (Vec<f64>, Vec<f64>) =
            (0..batch).map(|b| linalg::slogdet(&a[b * n * n..(b + 1) * n * n], n)).unzip();
        let shape = &self.shape()[..self.rank() - 2];
        let sign = Tensor::from_f64(&signs, shape, self.dtype(), self.device())?;
        let log = Tensor::from_f64(&logs, shape, self.dtype(), self.device())?;
        Ok((sign, log.with_op(|| Op::LogAbsDet(self.clone()))))
    }
}

/// g ↦ −A⁻ᵀ g A⁻ᵀ, with A⁻¹ the node's output `y`.
pub(crate) fn inverse_backward(y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let yt = y.t()?;
    Ok(vec![Some(yt.matmul(g)?.matmul(&yt)?.neg()?)])
}

/// g ↦ g · A⁻ᵀ per matrix.
pub(crate) fn log_abs_det_backward(x: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let mut shape = g.shape().to_vec();
    shape.extend_from_slice(&[1, 1]);
    Ok(vec![Some(x.inverse()?.t()?.mul(&g.reshape(&shape)?)?)])
}
