//! The invertible layers. Each maps x to (y, log|det ∂y/∂x|) with the
//! log-determinant per image, shape (n,), and back by `inverse` exactly.

use kiln_nn::{Conv2d, Init, Module, Path};
use kiln_tensor::{Conv2dParams, Error, Result, Tensor, Var, no_grad};

use kiln_tensor::linalg;

/// An invertible layer. `init` is the data-dependent initialisation pass
/// (actnorm sets its statistics from the batch; other layers ignore it).
pub trait Layer: Send + Sync {
    fn forward(&self, x: &Tensor, init: bool) -> Result<(Tensor, Tensor)>;
    fn inverse(&self, y: &Tensor) -> Result<Tensor>;
}

fn dims4(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    match x.shape() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(Error::Argument { op, msg: format!("expects (n, c, h, w), got {s:?}") }),
    }
}

/// A per-image log-det that does not depend on the image: `per_image` (a
/// scalar tensor) repeated n times.
fn constant_logdet(per_image: &Tensor, n: usize) -> Result<Tensor> {
    per_image.reshape(&[1])?.broadcast_as(&[n])
}

/// Space to depth: (n, c, h, w) -> (n, 4c, h/2, w/2), each 2×2 block's
/// pixels becoming channels c·4 + (2i + j), as openai/glow's squeeze2d.
pub struct Squeeze;

impl Layer for Squeeze {
    fn forward(&self, x: &Tensor, _init: bool) -> Result<(Tensor, Tensor)> {
        let [n, c, h, w] = dims4("squeeze2d", x)?;
        if !h.is_multiple_of(2) || !w.is_multiple_of(2) {
            return Err(Error::Argument {
                op: "squeeze2d",
                msg: format!("needs an even height and width, got {h}×{w}"),
            });
        }
        let y =
            x.reshape(&[n, c, h / 2, 2, w / 2, 2])?.permute(&[0, 1, 3, 5, 2, 4])?.reshape(&[n, c * 4, h / 2, w / 2])?;
        Ok((y, Tensor::zeros(&[n], x.dtype(), x.device())?))
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let [n, c4, h, w] = dims4("unsqueeze2d", y)?;
        if !c4.is_multiple_of(4) {
            return Err(Error::Argument { op: "unsqueeze2d", msg: format!("needs channels divisible by 4, got {c4}") });
        }
        let c = c4 / 4;
        y.reshape(&[n, c, 2, 2, h, w])?.permute(&[0, 1, 4, 2, 5, 3])?.reshape(&[n, c, h * 2, w * 2])
    }
}

/// Glow's actnorm: y = (x + b) · exp(logs) per channel; the first batch
/// (the `init` pass) sets b and logs so its outputs have zero mean and unit
/// variance per channel.
pub struct ActNorm {
    pub bias: Var,
    pub logs: Var,
}

impl ActNorm {
    pub fn new(p: &Path, channels: usize) -> Result<Self> {
        Ok(ActNorm {
            bias: p.param("bias", &[1, channels, 1, 1], Init::Const(0.0))?,
            logs: p.param("logs", &[1, channels, 1, 1], Init::Const(0.0))?,
        })
    }
}

impl Layer for ActNorm {
    fn forward(&self, x: &Tensor, init: bool) -> Result<(Tensor, Tensor)> {
        let [n, _, h, w] = dims4("actnorm", x)?;
        if init {
            let _g = no_grad();
            let mean = x.mean(&[0, 2, 3], true)?;
            let std = x.var(&[0, 2, 3], false, true)?.sqrt()?;
            self.bias.set(&mean.neg()?)?;
            self.logs.set(&std.add_scalar(1e-6)?.log()?.neg()?)?;
        }
        let y = x.add(&self.bias)?.mul(&self.logs.exp()?)?;
        Ok((y, constant_logdet(&self.logs.sum_all()?.mul_scalar((h * w) as f64)?, n)?))
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        y.mul(&self.logs.neg()?.exp()?)?.sub(&self.bias)
    }
}

/// How the 1×1 convolution's weight is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ConvForm {
    /// W = P L (U + diag(sign · exp(log_s))): log|det W| = Σ log_s, exact and cheap.
    Lu,
    /// A plain c × c weight: log|det W| from `slogdet` (host f64 LU each step).
    Plain,
}

/// The LU form's pieces: P and sign fixed, L, U and log_s trained.
struct LuWeight {
    perm: Tensor,
    sign: Tensor,
    lower: Var,
    upper: Var,
    log_s: Var,
    lower_mask: Tensor,
    upper_mask: Tensor,
    eye: Tensor,
}

/// Glow's invertible 1×1 convolution, W starting as a random rotation (so
/// log|det W| starts at 0).
pub struct InvConv {
    channels: usize,
    lu: Option<LuWeight>,
    plain: Option<Var>,
}

impl InvConv {
    pub fn new(p: &Path, channels: usize, form: ConvForm) -> Result<Self> {
        let c = channels;
        let (dtype, device) = (p.store().dtype(), p.store().device());
        let w = p.with_rng(|rng| linalg::random_orthogonal(c, rng))?;
        let tensor = |v: &[f64], shape: &[usize]| Tensor::from_f64(v, shape, dtype, device);
        if form == ConvForm::Plain {
            let weight = p.param("weight", &[c, c], Init::Const(0.0))?;
            weight.set(&tensor(&w, &[c, c])?)?;
            return Ok(InvConv { channels: c, lu: None, plain: Some(weight) });
        }
        let (rows, lu) = linalg::lu(&w, c)?;
        // P A = L U with (P A)[i] = A[rows[i]], so A = Pᵀ L U: Pᵀ[r][i] = 1 where r = rows[i].
        let mut perm = vec![0.0; c * c];
        rows.iter().enumerate().for_each(|(i, &r)| perm[r * c + i] = 1.0);
        let at = |f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> { (0..c * c).map(|k| f(k / c, k % c)).collect() };
        let diag: Vec<f64> = (0..c).map(|i| lu[i * c + i]).collect();
        let w = LuWeight {
            perm: p.buffer("perm", &[c, c], 0.0)?,
            sign: p.buffer("sign", &[c], 1.0)?,
            lower: p.param("lower", &[c, c], Init::Const(0.0))?,
            upper: p.param("upper", &[c, c], Init::Const(0.0))?,
            log_s: p.param("log_s", &[c], Init::Const(0.0))?,
            lower_mask: tensor(&at(&|i, j| f64::from(u8::from(i > j))), &[c, c])?,
            upper_mask: tensor(&at(&|i, j| f64::from(u8::from(i < j))), &[c, c])?,
            eye: tensor(&at(&|i, j| f64::from(u8::from(i == j))), &[c, c])?,
        };
        w.perm.assign(&tensor(&perm, &[c, c])?)?;
        w.sign.assign(&tensor(&diag.iter().map(|d| d.signum()).collect::<Vec<_>>(), &[c])?)?;
        w.lower.set(&tensor(&at(&|i, j| if i > j { lu[i * c + j] } else { 0.0 }), &[c, c])?)?;
        w.upper.set(&tensor(&at(&|i, j| if i < j { lu[i * c + j] } else { 0.0 }), &[c, c])?)?;
        w.log_s.set(&tensor(&diag.iter().map(|d| d.abs().ln()).collect::<Vec<_>>(), &[c])?)?;
        Ok(InvConv { channels: c, lu: Some(w), plain: None })
    }

    /// W (c, c) and log|det W|, recorded so gradients reach the parameters.
    pub fn weight(&self) -> Result<(Tensor, Tensor)> {
        match (&self.lu, &self.plain) {
            (Some(w), _) => {
                let l = w.lower.mul(&w.lower_mask)?.add(&w.eye)?;
                let s = w.sign.mul(&w.log_s.exp()?)?.reshape(&[1, self.channels])?;
                let u = w.upper.mul(&w.upper_mask)?.add(&w.eye.mul(&s)?)?;
                Ok((w.perm.matmul(&l)?.matmul(&u)?, w.log_s.sum_all()?))
            }
            (None, Some(w)) => Ok(((*w).as_tensor().clone(), w.slogdet()?.1)),
            (None, None) => Err(Error::Argument { op: "invconv", msg: "no weight".into() }),
        }
    }

    fn conv(x: &Tensor, w: &Tensor, c: usize) -> Result<Tensor> {
        x.conv2d(&w.reshape(&[c, c, 1, 1])?, None, Conv2dParams::default())
    }
}

impl Layer for InvConv {
    fn forward(&self, x: &Tensor, _init: bool) -> Result<(Tensor, Tensor)> {
        let [n, _, h, w] = dims4("invconv", x)?;
        let (weight, log_det) = self.weight()?;
        let y = Self::conv(x, &weight, self.channels)?;
        Ok((y, constant_logdet(&log_det.mul_scalar((h * w) as f64)?, n)?))
    }

    /// W⁻¹ comes from the host's f64 LU (`Tensor::inverse`).
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Self::conv(y, &self.weight()?.0.inverse()?, self.channels)
    }
}

/// Which part of x conditions the coupling and which is transformed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mask {
    /// Halves of the channels: the first ⌊c/2⌋ condition the rest, or the
    /// reverse when `flip`.
    Channel { flip: bool },
    /// Pixels with (i + j) % 2 == parity condition the others.
    Checkerboard { parity: usize },
}

/// How the network's raw scale h becomes the log-scale s.
pub enum Bound {
    /// s = log sigmoid(h + 2) (Glow: scales in (0, 1), near 0.88 at start).
    Sigmoid,
    /// s = scale · tanh(h) with a learned scale per channel (RealNVP).
    Tanh(Var),
}

/// Affine coupling: y_b = x_b · exp(s(x_a)) + t(x_a), y_a = x_a, with s
/// and t from a network whose last layer starts at zero.
pub struct Coupling {
    mask: Mask,
    bound: Bound,
    net: Box<dyn Module>,
    /// The checkerboard's 0/1 pattern (1 where pixels condition), (1, 1, h, w).
    pattern: Option<Tensor>,
}

impl Coupling {
    /// `net` maps the conditioning input (⌊c/2⌋ or c channels) to
    /// 2 × the transformed channels: t first, then the raw scale.
    pub fn new(p: &Path, mask: Mask, bound: Bound, net: Box<dyn Module>, h: usize, w: usize) -> Result<Self> {
        let pattern = match mask {
            Mask::Channel { .. } => None,
            Mask::Checkerboard { parity } => {
                let v: Vec<f64> = (0..h * w).map(|k| f64::from(u8::from((k / w + k % w) % 2 == parity))).collect();
                Some(Tensor::from_f64(&v, &[1, 1, h, w], p.store().dtype(), p.store().device())?)
            }
        };
        Ok(Coupling { mask, bound, net, pattern })
    }

    /// (conditioning start, length, transformed start, length) for channel masks.
    fn halves(&self, c: usize) -> (usize, usize, usize, usize) {
        let a = c / 2;
        match self.mask {
            Mask::Channel { flip: false } => (0, a, a, c - a),
            _ => (c - a, a, 0, c - a),
        }
    }

    /// (s, t) for the transformed part, from the conditioning input.
    fn scale_shift(&self, cond: &Tensor, out: usize) -> Result<(Tensor, Tensor)> {
        let h = self.net.forward(cond, true)?;
        if h.shape()[1] != 2 * out {
            return Err(Error::Argument {
                op: "coupling",
                msg: format!("the network gives {} channels, the coupling needs {}", h.shape()[1], 2 * out),
            });
        }
        let (t, raw) = (h.narrow(1, 0, out)?, h.narrow(1, out, out)?);
        let s = match &self.bound {
            Bound::Sigmoid => raw.add_scalar(2.0)?.log_sigmoid()?,
            Bound::Tanh(scale) => raw.tanh()?.mul(scale)?,
        };
        Ok((s, t))
    }

    /// (s, t) over all of x for a checkerboard: zero where pixels condition.
    fn masked_scale_shift(&self, pattern: &Tensor, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (s, t) = self.scale_shift(&x.mul(pattern)?, x.shape()[1])?;
        let free = pattern.neg()?.add_scalar(1.0)?;
        Ok((s.mul(&free)?, t.mul(&free)?))
    }

    fn assemble(&self, a: Tensor, b: Tensor, a_first: bool) -> Result<Tensor> {
        if a_first { Tensor::cat(&[&a, &b], 1) } else { Tensor::cat(&[&b, &a], 1) }
    }
}

impl Layer for Coupling {
    fn forward(&self, x: &Tensor, _init: bool) -> Result<(Tensor, Tensor)> {
        let [_, c, _, _] = dims4("coupling", x)?;
        if let Some(pattern) = &self.pattern {
            let (s, t) = self.masked_scale_shift(pattern, x)?;
            return Ok((x.mul(&s.exp()?)?.add(&t)?, s.sum(&[1, 2, 3], false)?));
        }
        let (a0, a, b0, b) = self.halves(c);
        let (xa, xb) = (x.narrow(1, a0, a)?, x.narrow(1, b0, b)?);
        let (s, t) = self.scale_shift(&xa, b)?;
        let yb = xb.mul(&s.exp()?)?.add(&t)?;
        Ok((self.assemble(xa, yb, a0 == 0)?, s.sum(&[1, 2, 3], false)?))
    }

    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let [_, c, _, _] = dims4("coupling inverse", y)?;
        if let Some(pattern) = &self.pattern {
            let (s, t) = self.masked_scale_shift(pattern, y)?;
            return y.sub(&t)?.mul(&s.neg()?.exp()?);
        }
        let (a0, a, b0, b) = self.halves(c);
        let (ya, yb) = (y.narrow(1, a0, a)?, y.narrow(1, b0, b)?);
        let (s, t) = self.scale_shift(&ya, b)?;
        let xb = yb.sub(&t)?.mul(&s.neg()?.exp()?)?;
        self.assemble(ya, xb, a0 == 0)
    }
}

/// A conv whose weight and bias start at zero (so a coupling or a prior starts as the identity / N(0, 1)).
pub fn zero_conv(p: &Path, cin: usize, cout: usize, kernel: usize) -> Result<Conv2d> {
    let conv = Conv2d::new(p, cin, cout, kernel, same(kernel), true)?;
    p.reinit("weight", Init::Const(0.0))?;
    p.reinit("bias", Init::Const(0.0))?;
    Ok(conv)
}

/// Stride 1 with the padding that keeps the size (odd kernels).
pub fn same(kernel: usize) -> Conv2dParams {
    Conv2dParams { padding: [kernel / 2; 2], ..Default::default() }
}
