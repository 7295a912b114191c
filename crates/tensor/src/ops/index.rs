//! Index ops with PyTorch semantics and i64 index tensors: gather /
//! scatter_add along a dim, index_select / index_add with a 1-D index.
//! Each pair is adjoint, so each is the other's gradient.

use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::{DType, Device, Tensor};

fn check_index(op: &'static str, idx: &Tensor, device: Device) -> Result<()> {
    if idx.dtype() != DType::I64 {
        return Err(arg_err(op, format!("indices must be i64, got {:?}", idx.dtype())));
    }
    if idx.device() != device {
        return Err(crate::Error::DeviceMismatch { op, lhs: device, rhs: idx.device() });
    }
    Ok(())
}

/// Shapes equal except along `dim` (kiln is stricter than torch here).
fn check_along(op: &'static str, a: &[usize], b: &[usize], dim: usize) -> Result<()> {
    let ok = a.len() == b.len() && dim < a.len() && (0..a.len()).all(|d| d == dim || a[d] == b[d]);
    if ok { Ok(()) } else { Err(shape_err(op, format!("shapes {a:?} and {b:?} must match outside dim {dim}"))) }
}

impl Tensor {
    /// An i64 index tensor from host values.
    pub fn indices(values: &[i64], shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::from_slice(values, shape, device)
    }

    /// torch.gather: out[..i..] = x[..index[..i..]..] along `dim`; `index`
    /// must match x's shape outside `dim`.
    pub fn gather(&self, dim: usize, index: &Tensor) -> Result<Tensor> {
        check_index("gather", index, self.device())?;
        check_along("gather", self.shape(), index.shape(), dim)?;
        let s = self.storage().gather(self.layout(), dim, &index.storage(), index.layout())?;
        Ok(Tensor::from_op(s, index.shape(), || Op::Gather(self.clone(), dim, index.clone())))
    }

    /// Zeros of `shape` with torch.scatter_add_ of `self` (shaped like `index`).
    pub fn scatter_add(&self, dim: usize, index: &Tensor, shape: &[usize]) -> Result<Tensor> {
        check_index("scatter_add", index, self.device())?;
        if index.shape() != self.shape() {
            return Err(shape_err(
                "scatter_add",
                format!("index {:?} and source {:?} must have the same shape", index.shape(), self.shape()),
            ));
        }
        check_along("scatter_add", shape, index.shape(), dim)?;
        let s = self.storage().scatter_add(self.layout(), dim, &index.storage(), index.layout(), shape)?;
        Ok(Tensor::from_op(s, shape, || Op::ScatterAdd(self.clone(), dim, index.clone())))
    }

    /// torch.index_select with a 1-D i64 index.
    pub fn index_select(&self, dim: usize, index: &Tensor) -> Result<Tensor> {
        check_index("index_select", index, self.device())?;
        self.dim_size("index_select", dim)?;
        if index.rank() != 1 {
            return Err(shape_err("index_select", format!("index must be 1-D, got {:?}", index.shape())));
        }
        let s = self.storage().index_select(self.layout(), dim, &index.storage(), index.layout())?;
        let mut shape = self.shape().to_vec();
        shape[dim] = index.numel();
        Ok(Tensor::from_op(s, &shape, || Op::IndexSelect(self.clone(), dim, index.clone())))
    }

    /// Zeros with `len` entries along `dim`, then torch.index_add_ of `self`
    /// at rows `index` (repeated indices accumulate).
    pub fn index_add(&self, dim: usize, index: &Tensor, len: usize) -> Result<Tensor> {
        check_index("index_add", index, self.device())?;
        if index.rank() != 1 || self.dim_size("index_add", dim)? != index.numel() {
            return Err(shape_err(
                "index_add",
                format!(
                    "index {:?} must be 1-D with one entry per slice of {:?} along dim {dim}",
                    index.shape(),
                    self.shape()
                ),
            ));
        }
        let s = self.storage().index_add(self.layout(), dim, &index.storage(), index.layout(), len)?;
        let mut shape = self.shape().to_vec();
        shape[dim] = len;
        Ok(Tensor::from_op(s, &shape, || Op::IndexAdd(self.clone(), dim, index.clone())))
    }
}

type Grads = Result<Vec<Option<Tensor>>>;

pub(crate) fn gather_backward(x: &Tensor, dim: usize, idx: &Tensor, g: &Tensor) -> Grads {
    Ok(vec![Some(g.scatter_add(dim, idx, x.shape())?), None])
}

pub(crate) fn scatter_add_backward(dim: usize, idx: &Tensor, g: &Tensor) -> Grads {
    Ok(vec![Some(g.gather(dim, idx)?), None])
}

pub(crate) fn index_select_backward(x: &Tensor, dim: usize, idx: &Tensor, g: &Tensor) -> Grads {
    Ok(vec![Some(g.index_add(dim, idx, x.shape()[dim])?), None])
}

pub(crate) fn index_add_backward(dim: usize, idx: &Tensor, g: &Tensor) -> Grads {
    Ok(vec![Some(g.index_select(dim, idx)?), None])
}
