//! Batched matmul on `matrixmultiply`: one single-threaded GEMM per
//! (batch, row block), spread over rayon (its own threading barely scales
//! for the short, wide matrices that convolutions produce).

use rayon::prelude::*;

use super::{CpuStorage, with_float2};
use crate::{Float, Layout, Result};

/// A matrix operand: a slice and its (row, column) strides, in elements.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn t(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }
}

/// c (m×n, row-major, row stride `ldc`) = a·b + beta·c.
pub fn gemm<T: Float>([m, k, n]: [usize; 3], a: Mat<T>, b: Mat<T>, beta: T, c: &mut [T], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    let need = |mat: &Mat<T>, r: usize, cl: usize| {
        if r == 0 || cl == 0 { 0 } else { (r - 1) * mat.rs + (cl - 1) * mat.cs + 1 }
    };
    assert!(a.data.len() >= need(&a, m, k) && b.data.len() >= need(&b, k, n));
    assert!(c.len() >= (m - 1) * ldc + n);
    // SAFETY: the asserts above bound every index the kernel touches; `c`
    // is a unique borrow so it cannot alias `a` or `b`.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            T::one(),
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    }
}

fn matmul_t<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let batch_shape = &la.shape()[..r - 2];
    let batch: usize = batch_shape.iter().product();
    let mut out = vec![T::zero(); batch * m * n];
    if out.is_empty() {
        return out;
    }
    // Storage offset of batch `i` for a layout (batch dims may be stride 0).
    let batch_offset = |l: &Layout, mut i: usize| {
        let mut off = l.offset();
        for d in (0..r - 2).rev() {
            off += (i % batch_shape[d]) * l.strides()[d];
            i /= batch_shape[d];
        }
        off
    };
    let threads = rayon::current_num_threads();
    let blocks = if m * n * k < 1 << 15 { 1 } else { (2 * threads).div_ceil(batch).clamp(1, m.div_ceil(8)) };
    let rows_per_block = m.div_ceil(blocks);
    out.par_chunks_mut(m * n).enumerate().for_each(|(bi, ob)| {
        let (oa, obb) = (batch_offset(la, bi), batch_offset(lb, bi));
        ob.par_chunks_mut(rows_per_block * n).enumerate().for_each(|(blk, oc)| {
            let row0 = blk * rows_per_block;
            let rows = oc.len() / n;
            let (rsa, csa) = (la.strides()[r - 2], la.strides()[r - 1]);
            let am = Mat { data: &a[oa + row0 * rsa..], rs: rsa, cs: csa };
            let bm = Mat { data: &b[obb..], rs: lb.strides()[r - 2], cs: lb.strides()[r - 1] };
            gemm([rows, k, n], am, bm, T::zero(), oc, n);
        });
    });
    out
}

/// `la` and `lb` are (batch..., m, k) and (batch..., k, n) with the batch
/// dims already broadcast to the same shape; the result is dense.
pub fn matmul(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    with_float2!("matmul", a, b, |x, y| matmul_t(x, la, y, lb))
}
