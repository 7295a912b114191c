//! Losses with torch.nn.functional semantics, composed from differentiable
//! ops and written for stability (no log of a sigmoid, no exp overflow).

use crate::error::{Result, shape_err};
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::{DType, Tensor, autograd};

/// torch's `reduction` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    None,
    #[default]
    Mean,
    Sum,
}

fn reduce(loss: Tensor, r: Reduction) -> Result<Tensor> {
    match r {
        Reduction::None => Ok(loss),
        Reduction::Mean => loss.mean_all(),
        Reduction::Sum => loss.sum_all(),
    }
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(shape_err(
            op,
            format!("input {:?} and target {:?} must have the same shape", a.shape(), b.shape()),
        ));
    }
    Ok(())
}

/// torch's element `weight=`: broadcast to the loss's shape (never the
/// other way), multiplied in before the reduction.
fn weighted(op: &'static str, loss: Tensor, weight: Option<&Tensor>) -> Result<Tensor> {
    match weight {
        Some(w) => {
            check_same(op, &loss, w)?;
            loss.mul(&w.broadcast_as(loss.shape())?)
        }
        None => Ok(loss),
    }
}

/// binary_cross_entropy_with_logits: (1 − t)·x + (1 + (pw − 1)·t)·softplus(−x),
/// exact for any |x| (softplus(−x) never overflows). Targets may be soft
/// (label smoothing); `pos_weight` broadcasts over the last dim and `weight`
/// over the whole input, as in torch.
pub fn binary_cross_entropy_with_logits(
    x: &Tensor,
    t: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    r: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    same_shape(OP, x, t)?;
    let sp = x.neg()?.softplus(1.0, 20.0)?;
    let pos_scale = match pos_weight {
        Some(pw) => t.mul(&pw.add_scalar(-1.0)?)?.add_scalar(1.0)?,
        None => t.ones_like()?,
    };
    let loss = t.affine(-1.0, 1.0)?.mul(x)?.add(&pos_scale.mul(&sp)?)?;
    reduce(weighted(OP, loss, weight)?, r)
}

/// binary_cross_entropy on probabilities, as torch: each log clamped at
/// −100 in the forward, and torch's own gradients, finite at p = 0 and 1:
/// d/dp = (p − t)/max(p(1 − p), 1e-12), d/dt = ln(1 − p) − ln p.
pub fn binary_cross_entropy(p: &Tensor, t: &Tensor, weight: Option<&Tensor>, r: Reduction) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    same_shape(OP, p, t)?;
    check_same(OP, p, t)?;
    let loss = {
        let _values_only = autograd::no_grad();
        let log_p = p.log()?.clamp(-100.0, f64::INFINITY)?;
        let log_1mp = p.affine(-1.0, 1.0)?.log()?.clamp(-100.0, f64::INFINITY)?;
        t.mul(&log_p)?.add(&t.affine(-1.0, 1.0)?.mul(&log_1mp)?)?.neg()?
    };
    let loss = loss.view(loss.layout().clone(), || Op::BinaryCrossEntropy(p.clone(), t.clone()));
    reduce(weighted(OP, loss, weight)?, r)
}

pub(crate) fn binary_cross_entropy_backward(p: &Tensor, t: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let q = p.affine(-1.0, 1.0)?;
    let gp = g.mul(&p.sub(t)?)?.div(&p.mul(&q)?.clamp(1e-12, f64::INFINITY)?)?;
    let gt = g.mul(&q.log()?.sub(&p.log()?)?)?;
    Ok(vec![Some(gp), Some(gt)])
}

pub fn mse_loss(x: &Tensor, t: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("mse_loss", x, t)?;
    reduce(x.sub(t)?.sqr()?, r)
}

pub fn l1_loss(x: &Tensor, t: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("l1_loss", x, t)?;
    reduce(x.sub(t)?.abs()?, r)
}

/// torch.nn.functional.cross_entropy's keyword arguments (class targets).
#[derive(Debug, Clone, Copy)]
pub struct CrossEntropy<'a> {
    /// A weight per class (C): each term is scaled by its target's weight,
    /// and the mean divides by the sum of those weights.
    pub weight: Option<&'a Tensor>,
    /// Targets equal to this contribute nothing, to the sum or the count
    /// (torch's default −100; a mean over only ignored targets is NaN).
    pub ignore_index: i64,
    /// (1 − ε)·nll + ε·(the weighted mean over classes of −log p).
    pub label_smoothing: f64,
    pub reduction: Reduction,
}

impl Default for CrossEntropy<'_> {
    fn default() -> Self {
        CrossEntropy { weight: None, ignore_index: -100, label_smoothing: 0.0, reduction: Reduction::Mean }
    }
}

/// cross_entropy from logits (N, C, d1, …) and i64 class targets
/// (N, d1, …), or unbatched (C,) and a 0-d target, with torch's `weight`,
/// `ignore_index`, `label_smoothing` and `reduction`.
pub fn cross_entropy(logits: &Tensor, target: &Tensor, args: CrossEntropy) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    let s = logits.shape();
    // Class dim 0 when unbatched (C,), else 1; the target has the other dims.
    let (batch_shape, c) = match s {
        [c] => (vec![], *c),
        [n, c, rest @ ..] => ([&[*n], rest].concat(), *c),
        [] => return Err(shape_err(OP, "logits need a class dim, got a 0-d tensor")),
    };
    if target.shape() != batch_shape || target.dtype() != DType::I64 {
        return Err(shape_err(
            OP,
            format!(
                "expects logits (N, C, d1, …) with i64 targets (N, d1, …), or (C,) with a 0-d target; \
                 got {:?} and {:?} {:?}",
                s,
                target.shape(),
                target.dtype()
            ),
        ));
    }
    if let Some(w) = args.weight {
        check_same(OP, logits, w)?;
        if w.shape() != [c] {
            return Err(shape_err(OP, format!("weight must have one entry per class ({c}), got {:?}", w.shape())));
        }
    }
    // Rows of classes: (M, C) with M = N·d1·…, and targets (M).
    let rows = if s.len() == 1 {
        logits.unsqueeze(0)?
    } else {
        let class_last: Vec<usize> = (0..s.len()).filter(|&d| d != 1).chain([1]).collect();
        logits.permute(&class_last)?.reshape(&[usize::MAX, c])?
    };
    let target = target.reshape(&[rows.shape()[0]])?;
    // The mask in the logits' float dtype (GPUs have no i64 arithmetic;
    // class indices are exact in f32 up to 2²⁴). Ignored entries gather
    // class 0 and are then zeroed by `keep`.
    let as_float = target.to_dtype(logits.dtype())?;
    let keep = as_float.ne(&as_float.scalar_like(args.ignore_index as f64)?)?;
    let safe = as_float.mul(&keep)?.to_dtype(DType::I64)?;
    let logp = rows.log_softmax(1)?;
    let picked = logp.gather(1, &safe.unsqueeze(1)?)?.squeeze(1)?.neg()?;
    let w_target = match args.weight {
        Some(w) => w.index_select(0, &safe)?.mul(&keep)?,
        None => keep.clone(),
    };
    let mut loss = picked.mul(&w_target)?;
    let eps = args.label_smoothing;
    if eps > 0.0 {
        let per_class = match args.weight {
            Some(w) => logp.mul(&w.unsqueeze(0)?)?,
            None => logp,
        };
        let smooth = per_class.sum(&[1], false)?.neg()?.mul(&keep)?;
        loss = loss.mul_scalar(1.0 - eps)?.add(&smooth.mul_scalar(eps / c as f64)?)?;
    }
    match args.reduction {
        Reduction::None => loss.reshape(&batch_shape),
        Reduction::Sum => loss.sum_all(),
        Reduction::Mean => loss.sum_all()?.div(&w_target.sum_all()?),
    }
}

/// KL(N(mu, exp(logvar)) ‖ N(0, I)) summed over the latent dim and averaged
/// over the batch: 0.5·Σ(exp(lv) + mu² − 1 − lv) / N.
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    same_shape("gaussian_kl", mu, logvar)?;
    let n = mu.shape().first().copied().unwrap_or(1).max(1);
    logvar.exp()?.add(&mu.sqr()?)?.sub(logvar)?.add_scalar(-1.0)?.sum_all()?.mul_scalar(0.5 / n as f64)
}
