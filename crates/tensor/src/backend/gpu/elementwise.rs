//! Unary, binary (broadcast views) and where: one thread per output element,
//! inputs read through their strides (no densifying copy).

use super::params::{MAX_RANK, coalesce};
use super::{GpuBuf, Params, groups_for, u32_of};
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::{Layout, Result, error::shape_err};

/// (op code in shaders/elementwise.wgsl, p0, p1).
fn unary_code(op: UnaryOp) -> (usize, f64, f64) {
    use UnaryOp::*;
    match op {
        Neg => (0, 0.0, 0.0),
        Abs => (1, 0.0, 0.0),
        Sign => (2, 0.0, 0.0),
        Step => (3, 0.0, 0.0),
        Exp => (4, 0.0, 0.0),
        Log => (5, 0.0, 0.0),
        Sqrt => (6, 0.0, 0.0),
        Rsqrt => (7, 0.0, 0.0),
        Sqr => (8, 0.0, 0.0),
        Recip => (9, 0.0, 0.0),
        Tanh => (10, 0.0, 0.0),
        Sigmoid => (11, 0.0, 0.0),
        Relu => (12, 0.0, 0.0),
        Sin => (13, 0.0, 0.0),
        Cos => (14, 0.0, 0.0),
        Erf => (15, 0.0, 0.0),
        Silu => (16, 0.0, 0.0),
        Gelu => (17, 0.0, 0.0),
        GeluTanh => (18, 0.0, 0.0),
        PowF(p) => (19, p, 0.0),
        Affine { mul, add } => (20, mul, add),
        LeakyRelu(s) => (21, s, 0.0),
        Elu(a) => (22, a, 0.0),
        Softplus { beta, threshold } => (23, beta, threshold),
        Clamp { min, max } => (24, min, max),
        LeakyReluGrad(s) => (25, s, 0.0),
        SiluGrad => (26, 0.0, 0.0),
    }
}

fn binary_code(op: BinaryOp) -> usize {
    use BinaryOp::*;
    match op {
        Add => 0,
        Sub => 1,
        Mul => 2,
        Div => 3,
        Maximum => 4,
        Minimum => 5,
        Eq => 6,
        Ne => 7,
        Lt => 8,
        Le => 9,
        Gt => 10,
        Ge => 11,
        Pow => 12,
    }
}

fn rank_check(op: &'static str, shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(shape_err(
            op,
            format!("views of rank {} (after merging dims) are not supported on GPUs", shape.len()),
        ));
    }
    Ok(())
}

pub fn unary<S: GpuBuf>(s: &S, l: &Layout, op: UnaryOp) -> Result<S> {
    let name = op.name();
    s.expect_f32(name)?;
    let n = l.numel();
    let (shape, st) = coalesce(l.shape(), &[l.strides()]);
    rank_check(name, &shape)?;
    let (code, p0, p1) = unary_code(op);
    let out = s.alloc_like(name, n, s.dtype())?;
    let p = Params::new()
        .u(u32_of(name, n)? as usize)
        .u(shape.len())
        .u(code)
        .f(p0)
        .f(p1)
        .dims(&shape, 1)
        .dims(&st[0], 0)
        .u(l.offset());
    s.launch("elementwise", "elementwise_unary", false, &p, &[s, s, s], &[&out], groups_for(n, 256), 256)?;
    Ok(out)
}

pub fn binary<S: GpuBuf>(a: &S, la: &Layout, b: &S, lb: &Layout, op: BinaryOp) -> Result<S> {
    let name = op.name();
    a.same_device(name, b)?;
    if a.dtype() != b.dtype() {
        return Err(crate::Error::DTypeMismatch { op: name, lhs: a.dtype(), rhs: b.dtype() });
    }
    a.expect_f32(name)?;
    let n = la.numel();
    let (shape, st) = coalesce(la.shape(), &[la.strides(), lb.strides()]);
    rank_check(name, &shape)?;
    let out = a.alloc_like(name, n, a.dtype())?;
    let p = Params::new()
        .u(u32_of(name, n)? as usize)
        .u(shape.len())
        .u(binary_code(op))
        .dims(&shape, 1)
        .dims(&st[0], 0)
        .u(la.offset())
        .dims(&st[1], 0)
        .u(lb.offset());
    a.launch("elementwise", "elementwise_binary", false, &p, &[a, b, a], &[&out], groups_for(n, 256), 256)?;
    Ok(out)
}

pub fn where_cond<S: GpuBuf>(m: &S, lm: &Layout, a: &S, la: &Layout, b: &S, lb: &Layout) -> Result<S> {
    let name = "where_cond";
    m.same_device(name, a)?;
    m.same_device(name, b)?;
    for s in [m, a, b] {
        s.expect_f32(name)?;
    }
    let n = lm.numel();
    let (shape, st) = coalesce(lm.shape(), &[lm.strides(), la.strides(), lb.strides()]);
    rank_check(name, &shape)?;
    let out = m.alloc_like(name, n, m.dtype())?;
    let p = Params::new()
        .u(u32_of(name, n)? as usize)
        .u(shape.len())
        .dims(&shape, 1)
        .dims(&st[0], 0)
        .u(lm.offset())
        .dims(&st[1], 0)
        .u(la.offset())
        .dims(&st[2], 0)
        .u(lb.offset());
    m.launch("elementwise", "elementwise_where", false, &p, &[m, a, b], &[&out], groups_for(n, 256), 256)?;
    Ok(out)
}
