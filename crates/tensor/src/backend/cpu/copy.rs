//! Data movement: dense copies of strided views and strided writes into a
//! region of a destination (the primitive behind cat, narrow's backward and
//! in-place updates). Works for every dtype.

use super::{CpuStorage, dense, for_chunks};
use crate::layout::StridedOffsets;
use crate::{Layout, Result};

/// A dense row-major copy of the view.
pub fn contiguous(s: &CpuStorage, l: &Layout) -> CpuStorage {
    match s {
        CpuStorage::F16(v) => CpuStorage::F16(dense(v, l).into_owned()),
        CpuStorage::BF16(v) => CpuStorage::BF16(dense(v, l).into_owned()),
        CpuStorage::F32(v) => CpuStorage::F32(dense(v, l).into_owned()),
        CpuStorage::F64(v) => CpuStorage::F64(dense(v, l).into_owned()),
        CpuStorage::I64(v) => CpuStorage::I64(dense(v, l).into_owned()),
    }
}

fn copy_t<T: Copy + Send + Sync>(dst: &mut [T], dl: &Layout, src: &[T], sl: &Layout) {
    let src = dense(src, sl);
    if let Some(r) = dl.contiguous_range() {
        let d = &mut dst[r];
        for_chunks(d, |s, chunk| chunk.copy_from_slice(&src[s..s + chunk.len()]));
        return;
    }
    // A strided destination (e.g. a channel slice of a cat): walk it serially;
    // the offsets of distinct elements are distinct, so order does not matter.
    for (off, &x) in StridedOffsets::new_at(dl, 0, dl.numel()).zip(src.iter()) {
        dst[off] = x;
    }
}

/// Writes the view `src`/`sl` into the view `dl` of `dst` (same shape).
pub fn copy_into(dst: &mut CpuStorage, dl: &Layout, src: &CpuStorage, sl: &Layout) -> Result<()> {
    match (dst, src) {
        (CpuStorage::F16(d), CpuStorage::F16(s)) => copy_t(d, dl, s, sl),
        (CpuStorage::BF16(d), CpuStorage::BF16(s)) => copy_t(d, dl, s, sl),
        (CpuStorage::F32(d), CpuStorage::F32(s)) => copy_t(d, dl, s, sl),
        (CpuStorage::F64(d), CpuStorage::F64(s)) => copy_t(d, dl, s, sl),
        (CpuStorage::I64(d), CpuStorage::I64(s)) => copy_t(d, dl, s, sl),
        (d, s) => return Err(super::dtype_error("copy", d, s)),
    }
    Ok(())
}
