//! Batched matmul: one single-threaded GEMM (`sgemm` for f32 on AVX-512,
//! else `matrixmultiply`) per (batch, row or column block), spread over
//! rayon (matrixmultiply's own threading barely scales for the short, wide
//! matrices that convolutions produce).

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
    /// Elements an r×c view reaches from its start (0 when empty).
    pub fn span(&self, r: usize, c: usize) -> usize {
        if r == 0 || c == 0 { 0 } else { (r - 1) * self.rs + (c - 1) * self.cs + 1 }
    }
}

/// c (m×n, row-major, row stride `ldc`) = a·b + beta·c.
pub fn gemm<T: Float>([m, k, n]: [usize; 3], a: Mat<T>, b: Mat<T>, beta: T, c: &mut [T], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n);
    // SAFETY: `c` is a unique borrow covering every element written.
    unsafe { gemm_into([m, k, n], a, b, beta, c.as_mut_ptr(), ldc) }
}

/// `gemm` into a raw C.
///
/// # Safety
/// `c + i·ldc + j` for i < m, j < n must be valid, unaliased by `a`, `b`
/// and by any other thread while this runs.
pub unsafe fn gemm_into<T: Float>([m, k, n]: [usize; 3], a: Mat<T>, b: Mat<T>, beta: T, c: *mut T, ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.data.len() >= a.span(m, k) && b.data.len() >= b.span(k, n));
    // SAFETY: the assert bounds every index of a and b; c is the caller's.
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
            c,
            ldc as isize,
            1,
        )
    }
}

/// A C matrix shared by tasks that each write their own column block.
pub struct SharedOut<T>(pub *mut T);
// SAFETY: tasks write disjoint elements (their own columns); see `gemm_into`.
unsafe impl<T> Sync for SharedOut<T> {}
impl<T> SharedOut<T> {
    pub fn ptr(&self) -> *mut T {
        self.0
    }
}

fn matmul_t<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let batch_shape = &la.shape()[..r - 2];
    let batch: usize = batch_shape.iter().product();
    // Never zeroed: both GEMMs only write C when beta is 0 (clearing 4 MiB
    // on the calling thread before the parallel part cost 1024³ 4%).
    let len = batch * m * n;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let dst = SharedOut(out.as_mut_ptr());
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
    let (rsa, csa) = (la.strides()[r - 2], la.strides()[r - 1]);
    let (rsb, csb) = (lb.strides()[r - 2], lb.strides()[r - 1]);
    // Tasks per matrix: each packs its own share of the operands, so split
    // the longer of M and N (a row split repacks all of B per task, a
    // column split all of A), and one task per thread: each repacks the
    // other operand whole (1024³ ran 3% faster than with two per thread).
    let tasks = if m * n * k < 1 << 15 { 1 } else { threads.div_ceil(batch).max(1) };
    (0..batch).into_par_iter().for_each(|bi| {
        let (oa, obb) = (batch_offset(la, bi), batch_offset(lb, bi));
        // SAFETY: matrix bi's m·n outputs lie inside `out`'s capacity.
        let ob = SharedOut(unsafe { dst.ptr().add(bi * m * n) });
        if m >= n {
            let rows_per_task = m.div_ceil(tasks.min(m.div_ceil(8)));
            (0..m).step_by(rows_per_task).collect::<Vec<_>>().into_par_iter().for_each(|row0| {
                let am = Mat { data: &a[oa + row0 * rsa..], rs: rsa, cs: csa };
                let bm = Mat { data: &b[obb..], rs: rsb, cs: csb };
                // SAFETY: rows row0.. of matrix bi lie inside `out`, and no
                // other task writes them.
                unsafe { gemm_into([rows_per_task.min(m - row0), k, n], am, bm, T::zero(), ob.ptr().add(row0 * n), n) };
            });
        } else {
            // Equal column blocks, one per thread, in whole 16-wide vectors:
            // a block that is not whole 48-column tiles ends in a narrower
            // panel, which costs less than an unequal split (m128·k1024·n256
            // in 144 + 112 columns ran 8% slower than in 128 + 128).
            let width = n.div_ceil(threads.div_ceil(batch).max(1)).next_multiple_of(16);
            let col0s: Vec<usize> = (0..n).step_by(width).collect();
            col0s.into_par_iter().for_each(|col0| {
                let am = Mat { data: &a[oa..], rs: rsa, cs: csa };
                let bm = Mat { data: &b[obb + col0 * csb..], rs: rsb, cs: csb };
                // SAFETY: columns col0..col0+w of every row of matrix bi lie
                // inside `out`, and no other task writes those columns.
                unsafe { gemm_into([m, k, width.min(n - col0)], am, bm, T::zero(), ob.ptr().add(col0), n) };
            });
        }
    });
    // SAFETY: the tasks wrote every element (beta 0: C only written).
    unsafe { out.set_len(len) };
    out
}

/// `la` and `lb` are (batch..., m, k) and (batch..., k, n) with the batch
/// dims already broadcast to the same shape; the result is dense.
pub fn matmul(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    with_float2!("matmul", a, b, |x, y| matmul_t(x, la, y, lb))
}
