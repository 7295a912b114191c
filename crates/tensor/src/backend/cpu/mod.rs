//! The CPU backend: rayon over the outer work; f32 GEMM on our AVX-512
//! kernel (`sgemm`) where the CPU has it, else `matrixmultiply`.
//! It is the oracle the other backends are tested against, so every kernel
//! here is written for every layout first (strided inputs are densified once
//! with `dense`, never re-walked per element).

pub mod adam;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_exp16;
pub mod batch_norm;
pub mod conv2d;
#[cfg(target_arch = "x86_64")]
mod conv2d_gather;
#[cfg(target_arch = "x86_64")]
mod conv2d_phases;
#[cfg(target_arch = "x86_64")]
mod conv2d_winograd;
#[cfg(target_arch = "x86_64")]
mod conv2d_winograd2;
pub mod copy;
pub mod elementwise;
pub mod group_norm;
pub mod index;
pub mod linalg;
pub mod matmul;
pub mod pool;
pub mod reduce;
#[cfg(target_arch = "x86_64")]
pub mod sgemm;
pub mod softmax;

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::{DType, Error, Layout, Result, WithDType};

#[derive(Debug, Clone, PartialEq)]
pub enum CpuStorage {
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

/// Runs `$body` with `$v` bound to the typed buffer of a float (f32/f64)
/// storage; other dtypes give `UnsupportedDType` naming `$op`.
macro_rules! with_float {
    ($op:expr, $s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => Ok(CpuStorage::F32($body)),
            CpuStorage::F64($v) => Ok(CpuStorage::F64($body)),
            other => Err(crate::Error::UnsupportedDType { op: $op, dtype: other.dtype(), device: crate::Device::Cpu }),
        }
    };
}
pub(crate) use with_float;

/// Runs `$body` for any dtype (data movement that needs no arithmetic).
macro_rules! with_any {
    ($s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F16($v) => CpuStorage::F16($body),
            CpuStorage::BF16($v) => CpuStorage::BF16($body),
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
            CpuStorage::I64($v) => CpuStorage::I64($body),
        }
    };
}
pub(crate) use with_any;

/// Like `with_float!` for two same-dtype storages.
macro_rules! with_float2 {
    ($op:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (CpuStorage::F32($x), CpuStorage::F32($y)) => Ok(CpuStorage::F32($body)),
            (CpuStorage::F64($x), CpuStorage::F64($y)) => Ok(CpuStorage::F64($body)),
            (a, b) => Err($crate::backend::cpu::dtype_error($op, a, b)),
        }
    };
}
pub(crate) use with_float2;

pub(crate) fn dtype_error(op: &'static str, a: &CpuStorage, b: &CpuStorage) -> Error {
    if a.dtype() != b.dtype() {
        Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() }
    } else {
        Error::UnsupportedDType { op, dtype: a.dtype(), device: crate::Device::Cpu }
    }
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I64(_) => DType::I64,
        }
    }

    /// A buffer of `n` elements whose i-th value is `f(i)` converted to `dtype`.
    pub fn from_f64_fn(n: usize, dtype: DType, f: impl Fn(usize) -> f64) -> Self {
        fn build<T: WithDType>(n: usize, f: impl Fn(usize) -> f64) -> Vec<T> {
            (0..n).map(|i| T::from_f64(f(i))).collect()
        }
        match dtype {
            DType::F16 => CpuStorage::F16(build(n, f)),
            DType::BF16 => CpuStorage::BF16(build(n, f)),
            DType::F32 => CpuStorage::F32(build(n, f)),
            DType::F64 => CpuStorage::F64(build(n, f)),
            DType::I64 => CpuStorage::I64(build(n, f)),
        }
    }

    /// Every element (in layout order) as f64.
    pub fn to_f64_vec(&self, layout: &Layout) -> Vec<f64> {
        fn conv<T: WithDType>(v: &[T], l: &Layout) -> Vec<f64> {
            dense(v, l).iter().map(|x| x.to_f64()).collect()
        }
        match self {
            CpuStorage::F16(v) => conv(v, layout),
            CpuStorage::BF16(v) => conv(v, layout),
            CpuStorage::F32(v) => conv(v, layout),
            CpuStorage::F64(v) => conv(v, layout),
            CpuStorage::I64(v) => conv(v, layout),
        }
    }

    /// A dense copy converted to `dtype` (through f64, exact for every pair
    /// except the narrowing ones, which round to nearest like PyTorch).
    pub fn to_dtype(&self, layout: &Layout, dtype: DType) -> CpuStorage {
        fn conv<T: WithDType, U: WithDType>(v: &[T], l: &Layout) -> Vec<U> {
            dense(v, l).iter().map(|x| U::from_f64(x.to_f64())).collect()
        }
        fn to<T: WithDType>(v: &[T], l: &Layout, dtype: DType) -> CpuStorage {
            match dtype {
                DType::F16 => CpuStorage::F16(conv(v, l)),
                DType::BF16 => CpuStorage::BF16(conv(v, l)),
                DType::F32 => CpuStorage::F32(conv(v, l)),
                DType::F64 => CpuStorage::F64(conv(v, l)),
                DType::I64 => CpuStorage::I64(conv(v, l)),
            }
        }
        match self {
            CpuStorage::F16(v) => to(v, layout, dtype),
            CpuStorage::BF16(v) => to(v, layout, dtype),
            CpuStorage::F32(v) => to(v, layout, dtype),
            CpuStorage::F64(v) => to(v, layout, dtype),
            CpuStorage::I64(v) => to(v, layout, dtype),
        }
    }

    pub(crate) fn as_i64(&self, op: &'static str) -> Result<&[i64]> {
        match self {
            CpuStorage::I64(v) => Ok(v),
            other => Err(crate::error::arg_err(op, format!("indices must be i64, got {:?}", other.dtype()))),
        }
    }
}

/// The elements of `layout` as one dense row-major slice: borrowed when the
/// layout already is one, else gathered once (in parallel when large).
pub fn dense<'a, T: Copy + Send + Sync>(v: &'a [T], layout: &Layout) -> Cow<'a, [T]> {
    if let Some(r) = layout.contiguous_range() {
        return Cow::Borrowed(&v[r]);
    }
    let n = layout.numel();
    if n == 0 {
        return Cow::Owned(Vec::new());
    }
    let mut out = vec![v[layout.offset()]; n];
    for_chunks(&mut out, |start, chunk| {
        let offs = crate::layout::StridedOffsets::new_at(layout, start, chunk.len());
        for (o, off) in chunk.iter_mut().zip(offs) {
            *o = v[off];
        }
    });
    Cow::Owned(out)
}

/// Elements per rayon task in flat elementwise loops: big enough that the
/// task overhead vanishes, small enough to balance 2..64 threads.
pub const CHUNK: usize = 1 << 14;

/// Calls `f(start_index, chunk)` over `out` in chunks, in parallel when large.
/// A Vec of `n` elements written chunk by chunk in parallel by
/// `f(start, chunk)`, which must initialise every element of its chunk.
/// Outputs that are fully overwritten need no zero-fill first (the memsets
/// of zeroed outputs were several percent of a training step).
pub fn build_chunks<T: Copy + Send + Sync>(
    n: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    build_rows(n, CHUNK, f)
}

/// `build_chunks` with chunks of `rows` elements (the last may be shorter).
pub fn build_rows<T: Copy + Send + Sync>(
    n: usize,
    rows: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    if n <= rows {
        f(0, spare);
    } else {
        spare.par_chunks_mut(rows.max(1)).enumerate().for_each(|(i, c)| f(i * rows, c));
    }
    // SAFETY: `f` initialised every element of every chunk, which together
    // cover 0..n (its contract); T is Copy, so nothing needs dropping.
    unsafe { v.set_len(n) };
    v
}

/// Runs `f` compiled for AVX-512 when this CPU has it, picked at run time
/// as PyTorch picks its kernels: the crate is built for baseline x86-64, so
/// a plain loop vectorises only 4 f32 wide; inlined here it runs 16 wide.
/// IEEE operations round the same at any width, nothing is contracted to
/// FMA and no loop is reassociated, so results are bit-identical.
/// Callers mark the closure `#[inline(always)]`: a large one is otherwise
/// called, not inlined, and then runs as the baseline 4-wide code.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has every enabled feature (`avx512`).
        return unsafe { simd_avx512(f) };
    }
    f()
}

/// Whether the CPU has the AVX-512 subsets (F, BW, DQ, VL) and FMA that the
/// run-time vector paths are compiled for; asked once per process.
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn simd_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// A zeroed Vec of `n` elements handed out in parallel chunks of `rows`:
/// each task zeroes its own chunk (hot in its cache, and the page faults of
/// a fresh allocation are taken on every thread, not serially by a memset).
pub fn zeroed_rows<T: crate::Float>(n: usize, rows: usize, f: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    build_rows(n, rows, |start, chunk| {
        chunk.fill(std::mem::MaybeUninit::new(T::zero()));
        // SAFETY: every element was just initialised; MaybeUninit<T> has T's layout.
        let chunk = unsafe { &mut *(chunk as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
        f(start, chunk)
    })
}

pub fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() <= CHUNK {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| f(i * CHUNK, c));
    }
}

/// Runs `f` with two per-thread scratch slices of `lens` elements, for
/// buffers that are fully overwritten before they are read (column
/// matrices, staging and score tiles): reusing them across tasks saves an
/// allocation and a memset each (the memsets were ~7% of a DCGAN training
/// step, ~3% of attention). Falls back to fresh
/// buffers if the thread's scratch is already in use.
pub fn with_scratch<T: crate::Float, R>(lens: [usize; 2], f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Float is implemented for f32 and f64 only: plain old data, size 4 or
    // 8, alignment dividing 8, every bit pattern a valid value.
    assert!(std::mem::size_of::<T>() <= 8 && 8 % std::mem::align_of::<T>() == 0);
    let words = |n: usize| (n * std::mem::size_of::<T>()).div_ceil(8);
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let need = words(lens[0]) + words(lens[1]);
            if buf.len() < need {
                buf.resize(need, 0);
            }
            let (a, b) = buf.split_at_mut(words(lens[0]));
            // SAFETY: see above; the u64 words are initialised and aligned for T,
            // and each slice lies inside its own part of the buffer.
            let (a, b) = unsafe {
                (
                    std::slice::from_raw_parts_mut(a.as_mut_ptr().cast::<T>(), lens[0]),
                    std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<T>(), lens[1]),
                )
            };
            f(a, b)
        }
        Err(_) => f(&mut vec![T::zero(); lens[0]], &mut vec![T::zero(); lens[1]]),
    })
}
