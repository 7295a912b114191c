//! Dense copies of strided views, strided writes into a region, and the
//! f32 <-> i64 casts. Works on raw words, so any dtype the device holds.

use super::params::{MAX_RANK, coalesce, dense_strides};
use super::{GpuBuf, Params, elem_words, groups_for, u32_of};
use crate::{DType, Layout, Result, error::shape_err};

/// Writes view `sl` of `src` into view `dl` of `dst` (same shape).
fn copy_strided<S: GpuBuf>(dst: &S, dl: &Layout, src: &S, sl: &Layout) -> Result<()> {
    if src.dtype() == DType::F16 {
        return copy_f16(dst, dl, src, sl);
    }
    let n = dl.numel();
    let (shape, strides) = coalesce(dl.shape(), &[sl.strides(), dl.strides()]);
    if shape.len() > MAX_RANK {
        return Err(shape_err("copy", format!("view of rank {} is too irregular for the GPU copy", shape.len())));
    }
    let es = elem_words("copy", src.dtype(), src.device())?;
    let p = Params::new()
        .u(u32_of("copy", n)? as usize)
        .u(shape.len())
        .u(es)
        .dims(&shape, 1)
        .dims(&strides[0], 0)
        .u(sl.offset())
        .dims(&strides[1], 0)
        .u(dl.offset());
    src.launch("copy", "copy_strided", false, &p, &[src], &[dst], groups_for(n, 256), 256)
}

/// f16: the destination must be one dense run (every dense copy, cat along
/// the first dim); a thread owns each destination word.
fn copy_f16<S: GpuBuf>(dst: &S, dl: &Layout, src: &S, sl: &Layout) -> Result<()> {
    if !dl.is_contiguous() {
        return Err(crate::Error::UnsupportedDType {
            op: "copy into a strided view",
            dtype: DType::F16,
            device: dst.device(),
        });
    }
    let n = dl.numel();
    let (shape, strides) = coalesce(sl.shape(), &[sl.strides()]);
    if shape.len() > MAX_RANK {
        return Err(shape_err("copy", format!("view of rank {} is too irregular for the GPU copy", shape.len())));
    }
    let p = Params::new()
        .u(u32_of("copy", n)? as usize)
        .u(shape.len())
        .u(0)
        .dims(&shape, 1)
        .dims(&strides[0], 0)
        .u(sl.offset())
        .dims(&[], 0)
        .u(dl.offset());
    let words = (dl.offset() + n).div_ceil(2) - dl.offset() / 2;
    src.launch("copy", "copy_strided_f16", false, &p, &[src], &[dst], groups_for(words, 256), 256)
}

/// A dense row-major copy of the view.
pub fn contiguous<S: GpuBuf>(s: &S, l: &Layout) -> Result<S> {
    let out = s.alloc_like("copy", l.numel(), s.dtype())?;
    copy_strided(&out, &Layout::new(l.shape().to_vec(), dense_strides(l), 0), s, l)?;
    Ok(out)
}

/// Writes the view `src`/`sl` into the view `dl` of `dst` (same shape).
pub fn copy_into<S: GpuBuf>(dst: &mut S, dl: &Layout, src: &S, sl: &Layout) -> Result<()> {
    dst.same_device("copy", src)?;
    if dst.dtype() != src.dtype() {
        return Err(crate::Error::DTypeMismatch { op: "copy", lhs: dst.dtype(), rhs: src.dtype() });
    }
    if dst.same_buffer(src) {
        // One buffer cannot be bound for reading and writing at once.
        let tmp = contiguous(src, sl)?;
        return copy_strided(dst, dl, &tmp, &Layout::contiguous(sl.shape()));
    }
    copy_strided(dst, dl, src, sl)
}

pub fn to_dtype<S: GpuBuf>(s: &S, l: &Layout, dtype: DType) -> Result<S> {
    let entry = match (s.dtype(), dtype) {
        (a, b) if a == b => return contiguous(s, l),
        (DType::F32, DType::I64) => "copy_cast_f32_i64",
        (DType::I64, DType::F32) => "copy_cast_i64_f32",
        (DType::F32, DType::F16) => "copy_cast_f32_f16",
        (DType::F16, DType::F32) => "copy_cast_f16_f32",
        (_, other) => {
            let held = [DType::F32, DType::I64, DType::F16];
            let bad = if held.contains(&other) { s.dtype() } else { other };
            return Err(crate::Error::UnsupportedDType { op: "to_dtype", dtype: bad, device: s.device() });
        }
    };
    let (x, off) = super::dense(s, l)?;
    let n = l.numel();
    let out = s.alloc_like("to_dtype", n, dtype)?;
    let p = Params::new().u(n).u(off as usize);
    // The f32 → f16 cast writes a word (two halves) per thread.
    let threads = if dtype == DType::F16 { n.div_ceil(2) } else { n };
    s.launch("copy", entry, false, &p, &[&x], &[&out], groups_for(threads, 256), 256)?;
    Ok(out)
}
