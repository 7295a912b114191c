//! Batched matmul straight from the operands' strides (transposed and
//! broadcast views need no copy); output dense (batch…, m, n).

use super::params::{MAX_RANK, coalesce};
use super::{GpuBuf, Params, groups_for, u32_of};
use crate::{Layout, Result, error::shape_err};

pub fn matmul<S: GpuBuf>(a: &S, la: &Layout, b: &S, lb: &Layout) -> Result<S> {
    let op = "matmul";
    a.same_device(op, b)?;
    if a.dtype() != b.dtype() {
        return Err(crate::Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    let half = a.half_variant(op)?;
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let batch: usize = la.shape()[..r - 2].iter().product();
    let out = a.alloc_like(op, batch * m * n, a.dtype())?;
    if batch * m * n == 0 {
        return Ok(out);
    }
    if k == 0 {
        // Zero bits are 0.0 in f32 and f16 alike.
        out.clear()?;
        return Ok(out);
    }
    let (bshape, bst) = coalesce(&la.shape()[..r - 2], &[&la.strides()[..r - 2], &lb.strides()[..r - 2]]);
    if bshape.len() > MAX_RANK {
        return Err(shape_err(op, format!("batch of rank {} is too irregular for the GPU kernels", bshape.len())));
    }
    u32_of(op, a.len().max(b.len()).max(batch * m * n))?;
    let p = Params::new()
        .u(m)
        .u(k)
        .u(n)
        .u(batch)
        .u(bshape.len())
        .dims(&bshape, 1)
        .dims(&bst[0], 0)
        .u(la.offset())
        .u(la.strides()[r - 2])
        .u(la.strides()[r - 1])
        .dims(&bst[1], 0)
        .u(lb.offset())
        .u(lb.strides()[r - 2])
        .u(lb.strides()[r - 1]);
    let tiles = m.div_ceil(64) * n.div_ceil(64) * batch;
    let g = groups_for(tiles, 1);
    a.launch("matmul", "matmul_fwd", half, &p, &[a, b], &[&out], g, 256)?;
    Ok(out)
}
