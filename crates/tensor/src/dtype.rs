//! Element types. f32 and f64 compute everywhere on the CPU; f16 and bf16 are
//! storage types (convert with `to_dtype` to compute); i64 holds indices.

use half::{bf16, f16};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
    I64,
}

impl DType {
    pub fn size_in_bytes(&self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    pub fn is_float(&self) -> bool {
        !matches!(self, DType::I64)
    }
}

/// Rust element types that can back a tensor.
pub trait WithDType: Copy + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! with_dtype {
    ($t:ty, $d:ident, $from:expr, $to:expr) => {
        impl WithDType for $t {
            const DTYPE: DType = DType::$d;
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            fn to_f64(self) -> f64 {
                $to(self)
            }
        }
    };
}
with_dtype!(f32, F32, |v| v as f32, |v: f32| v as f64);
with_dtype!(f64, F64, |v| v, |v| v);
with_dtype!(f16, F16, f16::from_f64, f16::to_f64);
with_dtype!(bf16, BF16, bf16::from_f64, bf16::to_f64);
with_dtype!(i64, I64, |v| v as i64, |v: i64| v as f64);

/// The compute element types of the CPU backend (f32, f64).
pub trait Float:
    WithDType
    + num_traits::Float
    + num_traits::FloatConst
    + Default
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
{
    fn erf(self) -> Self;

    /// exp for kernels' inner loops: written to vectorise (no libm call);
    /// within 2 ulp for f32 on [−87.3, 88] (below: 0, above: e⁸⁸), exactly
    /// `exp` for f64. Kernels use it on max-subtracted values (≤ 0).
    fn exp_fast(self) -> Self;

    /// C = alpha * A B + beta * C with arbitrary (row, column) strides.
    ///
    /// # Safety
    /// The pointers and strides must describe valid m×k, k×n and m×n matrices,
    /// and `c` must not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Float for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn exp_fast(self) -> Self {
        // Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then Cephes'
        // degree-7 polynomial for e^r and 2ⁿ from the exponent bits. Rounding
        // to n uses the 1.5·2²³ trick, so the loop needs no libm call.
        const MAGIC: f32 = 12_582_912.0;
        let x = self.clamp(-87.336_55, 88.0);
        let t = x * std::f32::consts::LOG2_E + MAGIC;
        let n = t - MAGIC;
        let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65)
            * r
            + 0.5;
        let e = p * r * r + r + 1.0;
        let scale = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
        // Below the clamp (incl. −inf and NaN-free masked scores) → 0.
        if self < -87.336_55 { 0.0 } else { e * scale }
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::backend::cpu::sgemm;
            let strides_ok = [rsa, csa, rsb, csb, rsc].iter().all(|&s| s >= 0) && csc == 1;
            if alpha == 1.0 && (beta == 0.0 || beta == 1.0) && strides_ok && sgemm::available() {
                let view = |ptr, rs: isize, cs: isize| sgemm::View { ptr, rs: rs as usize, cs: cs as usize };
                // SAFETY: same contract as this function's; the CPU check is above.
                unsafe { sgemm::sgemm([m, k, n], view(a, rsa, csa), view(b, rsb, csb), beta == 1.0, c, rsc as usize) };
                return;
            }
        }
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl Float for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}
