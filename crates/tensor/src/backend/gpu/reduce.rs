//! Reductions over any set of dims: reduced dims are permuted innermost and
//! densified, then each row is reduced by workgroups (two passes or more
//! for long rows). Values and first-winner indices match the CPU oracle.

use super::{GpuBuf, Params, u32_of};
use crate::ops::reduce::ReduceOp;
use crate::{DType, Layout, Result};

/// Elements one workgroup reduces per pass.
const CHUNK: usize = 2048;

pub fn reduce<S: GpuBuf>(s: &S, l: &Layout, dims: &[usize], op: ReduceOp) -> Result<(S, S)> {
    let name = op.name();
    s.expect_f32(name)?;
    let mut order: Vec<usize> = (0..l.rank()).filter(|d| !dims.contains(d)).collect();
    order.extend_from_slice(dims);
    let len: usize = dims.iter().map(|&d| l.shape()[d]).product();
    let rows: usize = (0..l.rank()).filter(|d| !dims.contains(d)).map(|d| l.shape()[d]).product();
    let no_idx = s.alloc_like(name, 0, DType::I64)?;
    if len == 0 {
        if op != ReduceOp::Sum {
            return Err(crate::error::shape_err(
                name,
                format!("cannot reduce an empty dim of shape {:?} (dims {dims:?})", l.shape()),
            ));
        }
        let out = s.alloc_like(name, rows, DType::F32)?;
        out.clear()?;
        return Ok((out, no_idx));
    }
    let (mut x, mut off) = super::dense(s, &l.permute(&order))?;
    let mut idx = no_idx.clone();
    let mut len = len;
    let code = match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max => 1,
        ReduceOp::Min => 2,
    };
    let mut first = true;
    loop {
        let chunks = len.div_ceil(CHUNK);
        let groups = rows * chunks;
        let vals = s.alloc_like(name, groups, DType::F32)?;
        let out_idx = s.alloc_like(name, groups, DType::I64)?;
        let p = Params::new()
            .u(u32_of(name, rows)? as usize)
            .u(u32_of(name, len)? as usize)
            .u(code)
            .u(off as usize)
            .u(CHUNK)
            .u(chunks)
            .flag(!first);
        let g = super::groups_for(groups, 1);
        s.launch("reduce", "reduce_rows", false, &p, &[&x, &idx], &[&vals, &out_idx], g, 256)?;
        (x, off, idx, len, first) = (vals, 0, out_idx, chunks, false);
        if chunks == 1 {
            break;
        }
    }
    Ok((x, if op == ReduceOp::Sum { no_idx } else { idx }))
}
