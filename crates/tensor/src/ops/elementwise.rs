//! Elementwise ops: unary maps (with their parameters), broadcasting binary
//! ops and comparisons, where_cond. PyTorch semantics, including its
//! choices at kinks (relu'(0) = 0, abs'(0) = 0, ties of maximum split 50/50).

use crate::error::{Result, shape_err};
use crate::layout::broadcast_shapes;
use crate::op::Op;
use crate::{Error, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Neg,
    Abs,
    /// -1, 0 or 1; piecewise constant, so not differentiated.
    Sign,
    /// 1 where x > 0 else 0; piecewise constant, so not differentiated.
    Step,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Sqr,
    Recip,
    Tanh,
    Sigmoid,
    Relu,
    Sin,
    Cos,
    Erf,
    Silu,
    /// Exact GELU, x·Φ(x) (torch's approximate='none').
    Gelu,
    /// torch's approximate='tanh' GELU.
    GeluTanh,
    PowF(f64),
    /// x·mul + add.
    Affine {
        mul: f64,
        add: f64,
    },
    LeakyRelu(f64),
    /// leaky_relu's derivative: 1 where x > 0 else the slope (as torch, also
    /// at 0 and NaN). One pass in leaky_relu's backward instead of a step
    /// and an affine; piecewise constant, so not differentiated.
    LeakyReluGrad(f64),
    /// d silu/dx = σ(x)(1 + x(1 − σ(x))): SiLU's backward in one pass.
    SiluGrad,
    Elu(f64),
    Softplus {
        beta: f64,
        threshold: f64,
    },
    Clamp {
        min: f64,
        max: f64,
    },
}

impl UnaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
            UnaryOp::Step => "step",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Sqr => "sqr",
            UnaryOp::Recip => "recip",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Erf => "erf",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::PowF(_) => "powf",
            UnaryOp::Affine { .. } => "affine",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::LeakyReluGrad(_) => "leaky_relu_grad",
            UnaryOp::SiluGrad => "silu_grad",
            UnaryOp::Elu(_) => "elu",
            UnaryOp::Softplus { .. } => "softplus",
            UnaryOp::Clamp { .. } => "clamp",
        }
    }

    fn is_piecewise_constant(&self) -> bool {
        matches!(self, UnaryOp::Sign | UnaryOp::Step | UnaryOp::LeakyReluGrad(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    /// torch.pow with a tensor exponent (C's pow: 0⁰ = 1, a negative base
    /// with a non-integer exponent is NaN).
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Pow => "pow",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
        }
    }

    fn is_comparison(&self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
    }
}

/// Same dtype and device, or a typed error naming `op`.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch { op, lhs: a.device(), rhs: b.device() });
    }
    Ok(())
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        impl Tensor {
            $($(#[$doc])* pub fn $name(&self) -> Result<Tensor> {
                self.unary($op)
            })*
        }
    };
}

unary_methods! {
    neg => UnaryOp::Neg;
    abs => UnaryOp::Abs;
    /// sign(x) in {-1, 0, 1}; its gradient is zero (not recorded).
    sign => UnaryOp::Sign;
    exp => UnaryOp::Exp;
    log => UnaryOp::Log;
    sqrt => UnaryOp::Sqrt;
    rsqrt => UnaryOp::Rsqrt;
    sqr => UnaryOp::Sqr;
    recip => UnaryOp::Recip;
    tanh => UnaryOp::Tanh;
    sigmoid => UnaryOp::Sigmoid;
    relu => UnaryOp::Relu;
    sin => UnaryOp::Sin;
    cos => UnaryOp::Cos;
    erf => UnaryOp::Erf;
    silu => UnaryOp::Silu;
    /// Exact GELU (torch default, approximate='none').
    gelu => UnaryOp::Gelu;
    /// tanh-approximated GELU (torch approximate='tanh').
    gelu_tanh => UnaryOp::GeluTanh;
}

impl Tensor {
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let s = self.storage().unary(self.layout(), op)?;
        if op.is_piecewise_constant() {
            return Ok(Tensor::from_storage(s, self.shape()));
        }
        Ok(Tensor::from_op(s, self.shape(), || Op::Unary(self.clone(), op)))
    }

    pub fn powf(&self, exponent: f64) -> Result<Tensor> {
        self.unary(UnaryOp::PowF(exponent))
    }
    /// x·mul + add.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    pub fn add_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(1.0, v)
    }
    pub fn mul_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(v, 0.0)
    }
    /// torch.nn.functional.leaky_relu (default slope 0.01).
    pub fn leaky_relu(&self, negative_slope: f64) -> Result<Tensor> {
        self.unary(UnaryOp::LeakyRelu(negative_slope))
    }
    /// torch.nn.functional.elu (default alpha 1.0).
    pub fn elu(&self, alpha: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Elu(alpha))
    }
    /// torch.nn.functional.softplus (defaults beta 1, threshold 20).
    pub fn softplus(&self, beta: f64, threshold: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Softplus { beta, threshold })
    }
    /// torch.clamp; as torch (2.x), the gradient passes only strictly inside,
    /// min < x < max: an element on a bound (or any, when min >= max) gets 0.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Clamp { min, max })
    }
    /// log(sigmoid(x)) = -softplus(-x), stable for large |x|.
    pub fn log_sigmoid(&self) -> Result<Tensor> {
        self.neg()?.softplus(1.0, 20.0)?.neg()
    }

    /// A 0-d tensor of `v` with this tensor's dtype and device.
    pub fn scalar_like(&self, v: f64) -> Result<Tensor> {
        Tensor::full(v, &[], self.dtype(), self.device())
    }

    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        check_same(op.name(), self, rhs)?;
        let shape = broadcast_shapes(op.name(), self.shape(), rhs.shape())?;
        let la = self.layout().broadcast_as(op.name(), &shape)?;
        let lb = rhs.layout().broadcast_as(op.name(), &shape)?;
        let s = self.storage().binary(&la, &rhs.storage(), &lb, op)?;
        if op.is_comparison() {
            return Ok(Tensor::from_storage(s, &shape));
        }
        Ok(Tensor::from_op(s, &shape, || Op::Binary(self.clone(), rhs.clone(), op)))
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    /// torch.maximum (NaN propagates; at ties each side gets half the gradient).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }
    /// torch.pow(self, exponent) with broadcasting both ways. Gradients as
    /// torch: d/dx is 0 where the exponent is 0; d/dexponent = xʸ·ln x, 0
    /// where x = 0 and y >= 0.
    pub fn pow(&self, exponent: &Tensor) -> Result<Tensor> {
        self.binary(exponent, BinaryOp::Pow)
    }
    /// Comparisons return 0/1 in the operands' dtype (kiln has no bool
    /// dtype; `where_cond` treats nonzero as true).
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Eq)
    }
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Ne)
    }
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Lt)
    }
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Le)
    }
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Gt)
    }
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Ge)
    }

    /// torch.where(mask, a, b) with broadcasting of all three; `mask` is
    /// true where nonzero and receives no gradient.
    pub fn where_cond(mask: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_same("where_cond", a, b)?;
        check_same("where_cond", mask, a)?;
        let shape = broadcast_shapes("where_cond", mask.shape(), a.shape())?;
        let shape = broadcast_shapes("where_cond", &shape, b.shape())?;
        let lm = mask.layout().broadcast_as("where_cond", &shape)?;
        let la = a.layout().broadcast_as("where_cond", &shape)?;
        let lb = b.layout().broadcast_as("where_cond", &shape)?;
        let s = mask.storage().where_cond(&lm, &a.storage(), &la, &b.storage(), &lb)?;
        Ok(Tensor::from_op(s, &shape, || Op::Where(mask.detach(), a.clone(), b.clone())))
    }
}

type Grads2 = Result<Vec<Option<Tensor>>>;

pub(crate) fn unary_backward(x: &Tensor, y: &Tensor, g: &Tensor, op: UnaryOp) -> Grads2 {
    let c = |v: f64| x.scalar_like(v);
    let step = || x.unary(UnaryOp::Step);
    let gx = match op {
        UnaryOp::Sign | UnaryOp::Step | UnaryOp::LeakyReluGrad(_) => g.zeros_like()?,
        UnaryOp::Neg => g.neg()?,
        UnaryOp::Abs => g.mul(&x.sign()?)?,
        UnaryOp::Exp => g.mul(y)?,
        UnaryOp::Log => g.div(x)?,
        UnaryOp::Sqrt => g.mul_scalar(0.5)?.div(y)?,
        UnaryOp::Rsqrt => g.mul(&y.powf(3.0)?)?.mul_scalar(-0.5)?,
        UnaryOp::Sqr => g.mul(x)?.mul_scalar(2.0)?,
        UnaryOp::Recip => g.mul(&y.sqr()?)?.neg()?,
        UnaryOp::Tanh => g.mul(&y.sqr()?.affine(-1.0, 1.0)?)?,
        UnaryOp::Sigmoid => g.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
        UnaryOp::Relu => g.mul(&step()?)?,
        UnaryOp::Sin => g.mul(&x.cos()?)?,
        UnaryOp::Cos => g.mul(&x.sin()?)?.neg()?,
        UnaryOp::Erf => g.mul(&x.sqr()?.neg()?.exp()?)?.mul_scalar(std::f64::consts::FRAC_2_SQRT_PI)?,
        UnaryOp::Silu => g.mul(&x.unary(UnaryOp::SiluGrad)?)?,
        UnaryOp::SiluGrad => {
            // d/dx σ(1 + x(1 − σ)) = σ(1 − σ)(2 + x(1 − 2σ)).
            let s = x.sigmoid()?;
            let ds = s.mul(&s.affine(-1.0, 1.0)?)?;
            g.mul(&ds.mul(&x.mul(&s.affine(-2.0, 1.0)?)?.add_scalar(2.0)?)?)?
        }
        UnaryOp::Gelu => {
            let cdf = x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)?.erf()?.affine(0.5, 0.5)?;
            let pdf = x.sqr()?.mul_scalar(-0.5)?.exp()?.mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
            g.mul(&cdf.add(&x.mul(&pdf)?)?)?
        }
        UnaryOp::GeluTanh => {
            let (k, a) = ((2.0 / std::f64::consts::PI).sqrt(), 0.044715);
            let t = x.add(&x.powf(3.0)?.mul_scalar(a)?)?.mul_scalar(k)?.tanh()?;
            let du = x.sqr()?.affine(3.0 * a * k, k)?;
            // 0.5(1 + t) + 0.5·x·(1 − t²)·u'
            let d = t.affine(0.5, 0.5)?.add(&x.mul(&t.sqr()?.affine(-1.0, 1.0)?)?.mul(&du)?.mul_scalar(0.5)?)?;
            g.mul(&d)?
        }
        // torch: the gradient of x⁰ is 0 everywhere, also at x = 0.
        UnaryOp::PowF(0.0) => g.zeros_like()?,
        UnaryOp::PowF(p) => g.mul(&x.powf(p - 1.0)?)?.mul_scalar(p)?,
        UnaryOp::Affine { mul, .. } => g.mul_scalar(mul)?,
        UnaryOp::LeakyRelu(s) => g.mul(&x.unary(UnaryOp::LeakyReluGrad(s))?)?,
        UnaryOp::Elu(alpha) => Tensor::where_cond(&step()?, g, &g.mul(&y.add_scalar(alpha)?)?)?,
        UnaryOp::Softplus { beta, threshold } => {
            let linear = x.mul_scalar(beta)?.gt(&c(threshold)?)?;
            Tensor::where_cond(&linear, g, &g.mul(&x.mul_scalar(beta)?.sigmoid()?)?)?
        }
        UnaryOp::Clamp { min, max } => {
            let inside = x.gt(&c(min)?)?.mul(&x.lt(&c(max)?)?)?;
            g.mul(&inside)?
        }
    };
    Ok(vec![Some(gx)])
}

pub(crate) fn binary_backward(a: &Tensor, b: &Tensor, y: &Tensor, g: &Tensor, op: BinaryOp) -> Grads2 {
    let (ga, gb) = match op {
        BinaryOp::Add => (g.clone(), g.clone()),
        BinaryOp::Sub => (g.clone(), g.neg()?),
        BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
        BinaryOp::Div => (g.div(b)?, g.mul(y)?.div(b)?.neg()?),
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let wins = if op == BinaryOp::Maximum { a.gt(b)? } else { a.lt(b)? };
            let share = wins.add(&a.eq(b)?.mul_scalar(0.5)?)?;
            (g.mul(&share)?, g.mul(&share.affine(-1.0, 1.0)?)?)
        }
        BinaryOp::Pow => {
            let zero = g.scalar_like(0.0)?;
            let da = g.mul(b)?.mul(&a.pow(&b.add_scalar(-1.0)?)?)?;
            let da = Tensor::where_cond(&b.eq(&zero)?, &zero, &da)?;
            // Both masks are 0/1 products: x = 0 and y >= 0.
            let flat_at_zero = a.eq(&zero)?.mul(&b.ge(&zero)?)?;
            let db = Tensor::where_cond(&flat_at_zero, &zero, &g.mul(y)?.mul(&a.log()?)?)?;
            (da, db)
        }
        _ => return Err(shape_err(op.name(), "comparisons are not differentiable")),
    };
    Ok(vec![Some(ga.sum_to_shape(a.shape())?), Some(gb.sum_to_shape(b.shape())?)])
}

pub(crate) fn where_backward(mask: &Tensor, a: &Tensor, b: &Tensor, g: &Tensor) -> Grads2 {
    let zero = g.scalar_like(0.0)?;
    let ga = Tensor::where_cond(mask, g, &zero)?.sum_to_shape(a.shape())?;
    let gb = Tensor::where_cond(mask, &zero, g)?.sum_to_shape(b.shape())?;
    Ok(vec![None, Some(ga), Some(gb)])
}
