//! Elementwise kernels: unary maps, broadcasting binary maps, where_cond.
//! Operands arrive with layouts already broadcast to the output shape.

use super::{CpuStorage, build_chunks, dense, for_chunks, with_float, with_float2};
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
        UnaryOp::SiluGrad => map(v, l, move |x| {
            let s = sigmoid(x);
            s * (one + x * (one - s))
        }),
    }
}

#[inline]
fn sigmoid<T: Float>(x: T) -> T {
    // e^−|x| cannot overflow; a select rather than two exp branches, and
    // exp_fast rather than libm, so SiLU and sigmoid loops vectorise (the
    // U-Net's SiLUs were a sixth of its step as scalar expf calls).
    let e = (-x.abs()).exp_fast();
    let r = T::one() / (T::one() + e);
    if x >= T::zero() { r } else { e * r }
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
        _ => {
            // Broadcasts (a bias over (n, c, h, w), a mean over a group) and
            // views: walk rows of the innermost merged dimension, so the
            // common cases (both unit stride, or one operand constant
            // along the row) are tight loops rather than per-element
            // multi-index arithmetic.
            let (shape, sa, sb) = merge_dims(la, lb);
            let last = shape.len() - 1;
            let (w, ia, ib) = (shape[last], sa[last], sb[last]);
            build_chunks(n, |s, chunk| {
                let (mut pos, mut k) = (s, 0);
                while k < chunk.len() {
                    let (mut row, col) = (pos / w, pos % w);
                    let (mut a0, mut b0) = (la.offset() + col * ia, lb.offset() + col * ib);
                    for d in (0..last).rev() {
                        let i = row % shape[d];
                        row /= shape[d];
                        a0 += i * sa[d];
                        b0 += i * sb[d];
                    }
                    let len = (w - col).min(chunk.len() - k);
                    let out = &mut chunk[k..k + len];
                    let op = f;
                    super::simd(
                        #[inline(always)]
                        || match (ia, ib) {
                            (1, 1) => {
                                for ((o, &x), &y) in out.iter_mut().zip(&a[a0..a0 + len]).zip(&b[b0..b0 + len]) {
                                    o.write(op(x, y));
                                }
                            }
                            (1, 0) => {
                                let y = b[b0];
                                for (o, &x) in out.iter_mut().zip(&a[a0..a0 + len]) {
                                    o.write(op(x, y));
                                }
                            }
                            (0, 1) => {
                                let x = a[a0];
                                for (o, &y) in out.iter_mut().zip(&b[b0..b0 + len]) {
                                    o.write(op(x, y));
                                }
                            }
                            _ => {
                                for (j, o) in out.iter_mut().enumerate() {
                                    o.write(op(a[a0 + j * ia], b[b0 + j * ib]));
                                }
                            }
                        },
                    );
                    pos += len;
                    k += len;
                }
            })
        }
    }
}

/// The shape and both operands' strides with size-1 dimensions dropped and
/// neighbours merged wherever both layouts allow (stride[d] =
/// stride[d + 1]·size[d + 1] in each); never empty.
fn merge_dims(la: &Layout, lb: &Layout) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut shape, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for d in 0..la.rank() {
        let (size, a, b) = (la.shape()[d], la.strides()[d], lb.strides()[d]);
        if size == 1 {
            continue;
        }
        match (shape.last_mut(), sa.last_mut(), sb.last_mut()) {
            (Some(ps), Some(pa), Some(pb)) if *pa == a * size && *pb == b * size => {
                *ps *= size;
                *pa = a;
                *pb = b;
            }
            _ => {
                shape.push(size);
                sa.push(a);
                sb.push(b);
            }
        }
    }
    if shape.is_empty() {
        return (vec![1], vec![0], vec![0]);
    }
    (shape, sa, sb)
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
        BinaryOp::Pow => zip_map(a, la, b, lb, move |x, y| x.powf(y)),
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
        BinaryOp::Div | BinaryOp::Pow => {
            return Err(crate::error::arg_err(
                op.name(),
                "i64 division and pow are not supported: convert with to_dtype(F32/F64) first",
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
