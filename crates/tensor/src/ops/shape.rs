//! View and layout ops (no data copied unless said): reshape, permute,
//! transpose, narrow, broadcast_as, squeeze/unsqueeze, flatten; and the
//! copying ones: cat, stack, chunk/split (views), index-free slicing.

use crate::error::{Result, arg_err, shape_err};
use crate::layout::Layout;
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::{Storage, Tensor};

impl Tensor {
    /// torch.reshape: a view when the layout allows, else a copy. One dim
    /// may be given as `usize::MAX` to be inferred (torch's -1).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let shape = infer_shape(self.numel(), shape, self.shape())?;
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let src = if self.is_contiguous() { self.clone() } else { self.copy()? };
        let layout = Layout::contiguous_with_offset(&shape, src.layout().offset());
        Ok(src.view(layout, || Op::Reshape(src.clone())))
    }

    /// Reorders dims: `dims` is a permutation of 0..rank.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.rank()];
        if dims.len() != self.rank() || dims.iter().any(|&d| d >= self.rank() || std::mem::replace(&mut seen[d], true))
        {
            return Err(arg_err("permute", format!("{dims:?} is not a permutation of the dims of {:?}", self.shape())));
        }
        Ok(self.view(self.layout().permute(dims), || Op::Permute(self.clone(), dims.to_vec())))
    }

    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor> {
        self.dim_size("transpose", d0)?;
        self.dim_size("transpose", d1)?;
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(d0, d1);
        self.permute(&dims)
    }

    /// Swaps the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(shape_err("t", format!("needs at least 2 dims, got {:?}", self.shape())));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Elements `start..start+len` of `dim`, as a view.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let size = self.dim_size("narrow", dim)?;
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(shape_err(
                "narrow",
                format!("range {start}..{start}+{len} exceeds dim {dim} of size {size} (shape {:?})", self.shape()),
            ));
        }
        if start == 0 && len == size {
            return Ok(self.clone());
        }
        Ok(self.view(self.layout().narrow(dim, start, len), || Op::Narrow(self.clone(), dim, start)))
    }

    /// torch.expand to `shape` (size-1 or missing leading dims repeat, no copy).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_as("broadcast_as", shape)?;
        Ok(self.view(layout, || Op::Broadcast(self.clone())))
    }

    /// Removes `dim`, which must have size 1.
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        if self.dim_size("squeeze", dim)? != 1 {
            return Err(shape_err("squeeze", format!("dim {dim} of {:?} is not 1", self.shape())));
        }
        let mut s = self.shape().to_vec();
        s.remove(dim);
        self.reshape(&s)
    }

    /// Inserts a dim of size 1 at `dim` (0..=rank).
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        if dim > self.rank() {
            return Err(arg_err("unsqueeze", format!("dim {dim} out of range for {:?}", self.shape())));
        }
        let mut s = self.shape().to_vec();
        s.insert(dim, 1);
        self.reshape(&s)
    }

    /// Merges dims `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.rank().max(1) {
            return Err(arg_err("flatten", format!("bad range {start}..={end} for {:?}", self.shape())));
        }
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    /// Concatenates along `dim`; all other dims must match.
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = *tensors.first().ok_or_else(|| arg_err("cat", "needs at least one tensor"))?;
        first.dim_size("cat", dim)?;
        let mut shape = first.shape().to_vec();
        shape[dim] = 0;
        for t in tensors {
            check_same("cat", first, t)?;
            let ok = t.rank() == first.rank() && (0..t.rank()).all(|d| d == dim || t.shape()[d] == first.shape()[d]);
            if !ok {
                return Err(shape_err(
                    "cat",
                    format!("shape {:?} does not match {:?} outside dim {dim}", t.shape(), first.shape()),
                ));
            }
            shape[dim] += t.shape()[dim];
        }
        let mut out = Storage::zeros(shape.iter().product(), first.dtype(), first.device())?;
        let full = Layout::contiguous(&shape);
        let mut at = 0;
        for t in tensors {
            let len = t.shape()[dim];
            out.copy_into(&full.narrow(dim, at, len), &t.storage(), t.layout())?;
            at += len;
        }
        let inputs: Vec<Tensor> = tensors.iter().map(|&t| t.clone()).collect();
        Ok(Tensor::from_op(out, &shape, || Op::Cat(inputs, dim)))
    }

    /// Stacks equal-shaped tensors along a new dim.
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let parts = tensors.iter().map(|t| t.unsqueeze(dim)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), dim)
    }

    /// `chunks` views along `dim` of size ceil(n / chunks) (the last smaller), as torch.chunk.
    pub fn chunk(&self, chunks: usize, dim: usize) -> Result<Vec<Tensor>> {
        if chunks == 0 {
            return Err(arg_err("chunk", "chunks must be > 0"));
        }
        let n = self.dim_size("chunk", dim)?;
        let size = n.div_ceil(chunks).max(1);
        self.split(size, dim)
    }

    /// Views of `size` along `dim` (the last smaller), as torch.split.
    pub fn split(&self, size: usize, dim: usize) -> Result<Vec<Tensor>> {
        if size == 0 {
            return Err(arg_err("split", "size must be > 0"));
        }
        let n = self.dim_size("split", dim)?;
        (0..n).step_by(size).map(|s| self.narrow(dim, s, size.min(n - s))).collect()
    }
}

fn infer_shape(numel: usize, shape: &[usize], from: &[usize]) -> Result<Vec<usize>> {
    let holes = shape.iter().filter(|&&d| d == usize::MAX).count();
    let known: usize = shape.iter().filter(|&&d| d != usize::MAX).product();
    let bad = || shape_err("reshape", format!("cannot reshape {from:?} ({numel} elements) to {shape:?}"));
    match holes {
        0 if known == numel => Ok(shape.to_vec()),
        1 if known != 0 && numel.is_multiple_of(known) => {
            Ok(shape.iter().map(|&d| if d == usize::MAX { numel / known } else { d }).collect())
        }
        _ => Err(bad()),
    }
}

type Grads = Result<Vec<Option<Tensor>>>;

pub(crate) fn permute_backward(dims: &[usize], g: &Tensor) -> Grads {
    let mut inv = vec![0; dims.len()];
    for (i, &d) in dims.iter().enumerate() {
        inv[d] = i;
    }
    Ok(vec![Some(g.permute(&inv)?)])
}

/// Embeds `g` at `start` along `dim` of zeros shaped like `x` (differentiable: a cat).
pub(crate) fn narrow_backward(x: &Tensor, dim: usize, start: usize, g: &Tensor) -> Grads {
    let n = x.shape()[dim];
    let len = g.shape()[dim];
    let zeros = |k: usize| {
        let mut s = g.shape().to_vec();
        s[dim] = k;
        Tensor::zeros(&s, g.dtype(), g.device())
    };
    let (before, after) = (zeros(start)?, zeros(n - start - len)?);
    Ok(vec![Some(Tensor::cat(&[&before, g, &after], dim)?)])
}

pub(crate) fn cat_backward(inputs: &[Tensor], dim: usize, g: &Tensor) -> Grads {
    let mut at = 0;
    inputs
        .iter()
        .map(|t| {
            let len = t.shape()[dim];
            at += len;
            g.narrow(dim, at - len, len).map(Some)
        })
        .collect()
}
