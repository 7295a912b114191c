//! Elementwise kernels: unary maps, broadcasting binary maps, where_cond.
//! Operands arrive with layouts already broadcast to the output shape.

use super::{CpuStorage, build_chunks, dense, for_chunks, with_float, with_float2};
use crate::layout::StridedOffsets;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::{Float, Layout, Result};

/// `f` is Copy and copied into each chunk's frame: its captured constants
/// then live in registers, not behind a pointer the compiler must reload
/// after every store (which kept step / leaky_relu scalar).
fn map<T: Float>(v: &[T], l: &Layout, f: impl Fn(T) -> T + Sync + Copy) -> Vec<T> {
    let x = dense(v, l);
    build_chunks(x.len(), |start, chunk| {
        let op = f;
        super::simd(
            #[inline(always)]
            || {
                for (o, &xi) in chunk.iter_mut().zip(&x[start..]) {
                    o.write(op(xi));
                }
            },
        )
    })
}

fn unary_t<T: Float>(v: &[T], l: &Layout, op: UnaryOp) -> Vec<T> {
    let c = |x: f64| T::from_f64(x);
    let (zero, one, half) = (T::zero(), T::one(), c(0.5));
    match op {
        UnaryOp::Neg => map(v, l, move |x| -x),
        UnaryOp::Abs => map(v, l, move |x| x.abs()),
        UnaryOp::Sign => map(v, l, move |x| {
            if x > zero {
                one
            } else if x < zero {
                -one
            } else {
                zero
            }
        }),
        UnaryOp::Exp => map(v, l, move |x| x.exp()),
        UnaryOp::Log => map(v, l, move |x| x.ln()),
        UnaryOp::Sqrt => map(v, l, move |x| x.sqrt()),
        UnaryOp::Rsqrt => map(v, l, move |x| one / x.sqrt()),
        UnaryOp::Sqr => map(v, l, move |x| x * x),
        UnaryOp::Recip => map(v, l, move |x| one / x),
        UnaryOp::Tanh => map(v, l, move |x| x.tanh()),
        UnaryOp::Sigmoid => map(v, l, sigmoid),
        UnaryOp::Relu => map(v, l, move |x| if x > zero || x.is_nan() { x } else { zero }),
        UnaryOp::Sin => map(v, l, move |x| x.sin()),
        UnaryOp::Cos => map(v, l, move |x| x.cos()),
        UnaryOp::Erf => map(v, l, move |x| x.erf()),
        UnaryOp::Silu => map(v, l, move |x| x * sigmoid(x)),
        UnaryOp::Gelu => {
            let r = c(std::f64::consts::FRAC_1_SQRT_2);
            map(v, l, move |x| half * x * (one + (x * r).erf()))
        }
        UnaryOp::GeluTanh => {
            let (k, a) = (c((2.0 / std::f64::consts::PI).sqrt()), c(0.044715));
            map(v, l, move |x| half * x * (one + (k * (x + a * x * x * x)).tanh()))
        }
        UnaryOp::PowF(p) => {
            let p = c(p);
            map(v, l, move |x| x.powf(p))
        }
        UnaryOp::Affine { mul, add } => {
            let (m, a) = (c(mul), c(add));
            map(v, l, move |x| x * m + a)
        }
        UnaryOp::LeakyRelu(s) => {
            let s = c(s);
            map(v, l, move |x| if x > zero { x } else { x * s })
        }
        UnaryOp::Elu(alpha) => {
            let a = c(alpha);
            map(v, l, move |x| if x > zero { x } else { a * (x.exp() - one) })
        }
        UnaryOp::Softplus { beta, threshold } => {
            let (b, t) = (c(beta), c(threshold));
            // PyTorch: linear above the threshold; log1p(exp) below it.
            map(v, l, move |x| if x * b > t { x } else { (x * b).exp().ln_1p() / b })
        }
        UnaryOp::Clamp { min, max } => {
            let (lo, hi) = (c(min), c(max));
            map(v, l, move |x| if x.is_nan() { x } else { x.max(lo).min(hi) })
        }
        UnaryOp::Step => map(v, l, move |x| if x > zero { one } else { zero }),
        UnaryOp::LeakyReluGrad(s) => {
            let s = c(s);
            map(v, l, move |x| if x > zero { one } else { s })
        }
    }
}

#[inline]
fn sigmoid<T: Float>(x: T) -> T {
    // Two branches so neither exp can overflow.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

pub fn unary(s: &CpuStorage, l: &Layout, op: UnaryOp) -> Result<CpuStorage> {
    with_float!(op.name(), s, |v| unary_t(v, l, op))
}

/// out[i] = f(a[i], b[i]) over layouts of the same (broadcast) shape.
fn zip_map<T: Copy + Send + Sync + Default>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(T, T) -> T + Sync + Copy,
) -> Vec<T> {
    let n = la.numel();
    match (la.contiguous_range(), lb.contiguous_range()) {
        (Some(ra), Some(rb)) => {
            let (a, b) = (&a[ra], &b[rb]);
            build_chunks(n, |s, chunk| {
                let op = f;
                super::simd(
                    #[inline(always)]
                    || {
                        for ((o, &x), &y) in chunk.iter_mut().zip(&a[s..]).zip(&b[s..]) {
                            o.write(op(x, y));
                        }
                    },
                )
            })
        }
        _ => build_chunks(n, |s, chunk| {
            let oa = StridedOffsets::new_at(la, s, chunk.len());
            let ob = StridedOffsets::new_at(lb, s, chunk.len());
            for ((o, ia), ib) in chunk.iter_mut().zip(oa).zip(ob) {
                o.write(f(a[ia], b[ib]));
            }
        }),
    }
}

fn binary_t<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout, op: BinaryOp) -> Vec<T> {
    let (zero, one) = (T::zero(), T::one());
    let mask = move |c: bool| if c { one } else { zero };
    match op {
        BinaryOp::Add => zip_map(a, la, b, lb, move |x, y| x + y),
        BinaryOp::Sub => zip_map(a, la, b, lb, move |x, y| x - y),
        BinaryOp::Mul => zip_map(a, la, b, lb, move |x, y| x * y),
        BinaryOp::Div => zip_map(a, la, b, lb, move |x, y| x / y),
        // NaN propagates, as in torch.maximum / torch.minimum.
        BinaryOp::Maximum => zip_map(a, la, b, lb, move |x, y| if x.is_nan() || x > y { x } else { y }),
        BinaryOp::Minimum => zip_map(a, la, b, lb, move |x, y| if x.is_nan() || x < y { x } else { y }),
        BinaryOp::Eq => zip_map(a, la, b, lb, move |x, y| mask(x == y)),
        BinaryOp::Ne => zip_map(a, la, b, lb, move |x, y| mask(x != y)),
        BinaryOp::Lt => zip_map(a, la, b, lb, move |x, y| mask(x < y)),
        BinaryOp::Le => zip_map(a, la, b, lb, move |x, y| mask(x <= y)),
        BinaryOp::Gt => zip_map(a, la, b, lb, move |x, y| mask(x > y)),
        BinaryOp::Ge => zip_map(a, la, b, lb, move |x, y| mask(x >= y)),
    }
}

/// i64: exact integer arithmetic (wrapping, as torch) and comparisons;
/// division is refused (torch's true division returns floats).
fn binary_i64(a: &[i64], la: &Layout, b: &[i64], lb: &Layout, op: BinaryOp) -> Result<Vec<i64>> {
    let m = |c: bool| c as i64;
    Ok(match op {
        BinaryOp::Add => zip_map(a, la, b, lb, move |x, y| x.wrapping_add(y)),
        BinaryOp::Sub => zip_map(a, la, b, lb, move |x, y| x.wrapping_sub(y)),
        BinaryOp::Mul => zip_map(a, la, b, lb, move |x, y| x.wrapping_mul(y)),
        BinaryOp::Maximum => zip_map(a, la, b, lb, i64::max),
        BinaryOp::Minimum => zip_map(a, la, b, lb, i64::min),
        BinaryOp::Eq => zip_map(a, la, b, lb, move |x, y| m(x == y)),
        BinaryOp::Ne => zip_map(a, la, b, lb, move |x, y| m(x != y)),
        BinaryOp::Lt => zip_map(a, la, b, lb, move |x, y| m(x < y)),
        BinaryOp::Le => zip_map(a, la, b, lb, move |x, y| m(x <= y)),
        BinaryOp::Gt => zip_map(a, la, b, lb, move |x, y| m(x > y)),
        BinaryOp::Ge => zip_map(a, la, b, lb, move |x, y| m(x >= y)),
        BinaryOp::Div => {
            return Err(crate::error::arg_err(
                "div",
                "i64 division is not supported: convert with to_dtype(F32/F64) first",
            ));
        }
    })
}

pub fn binary(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout, op: BinaryOp) -> Result<CpuStorage> {
    if let (CpuStorage::I64(x), CpuStorage::I64(y)) = (a, b) {
        return Ok(CpuStorage::I64(binary_i64(x, la, y, lb, op)?));
    }
    with_float2!(op.name(), a, b, |x, y| binary_t(x, la, y, lb, op))
}

fn where_t<T: Float>(m: &[T], lm: &Layout, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let m = dense(m, lm);
    let a = dense(a, la);
    let b = dense(b, lb);
    let mut out = vec![T::zero(); m.len()];
    for_chunks(&mut out, |s, chunk| {
        for (i, o) in chunk.iter_mut().enumerate() {
            let j = s + i;
            *o = if m[j] != T::zero() { a[j] } else { b[j] };
        }
    });
    out
}

pub fn where_cond(
    m: &CpuStorage,
    lm: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> Result<CpuStorage> {
    match (m, a, b) {
        (CpuStorage::F32(m), CpuStorage::F32(a), CpuStorage::F32(b)) => {
            Ok(CpuStorage::F32(where_t(m, lm, a, la, b, lb)))
        }
        (CpuStorage::F64(m), CpuStorage::F64(a), CpuStorage::F64(b)) => {
            Ok(CpuStorage::F64(where_t(m, lm, a, la, b, lb)))
        }
        (m, a, b) => Err(super::dtype_error(
            "where_cond",
            if m.dtype() != a.dtype() { m } else { a },
            if m.dtype() != a.dtype() { a } else { b },
        )),
    }
}
