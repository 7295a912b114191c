//! Losses with torch.nn.functional semantics, composed from differentiable
//! ops and written for stability (no log of a sigmoid, no exp overflow).

use crate::Tensor;
use crate::error::{Result, shape_err};

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

/// binary_cross_entropy_with_logits: (1 − t)·x + (1 + (pw − 1)·t)·softplus(−x),
/// exact for any |x| (softplus(−x) never overflows). Targets may be soft
/// (label smoothing); `pos_weight` broadcasts over the last dim as in torch.
pub fn binary_cross_entropy_with_logits(
    x: &Tensor,
    t: &Tensor,
    pos_weight: Option<&Tensor>,
    r: Reduction,
) -> Result<Tensor> {
    same_shape("binary_cross_entropy_with_logits", x, t)?;
    let sp = x.neg()?.softplus(1.0, 20.0)?;
    let weight = match pos_weight {
        Some(pw) => t.mul(&pw.add_scalar(-1.0)?)?.add_scalar(1.0)?,
        None => t.ones_like()?,
    };
    let loss = t.affine(-1.0, 1.0)?.mul(x)?.add(&weight.mul(&sp)?)?;
    reduce(loss, r)
}

/// binary_cross_entropy on probabilities; logs clamped at −100 as torch does.
pub fn binary_cross_entropy(p: &Tensor, t: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("binary_cross_entropy", p, t)?;
    let log_p = p.log()?.clamp(-100.0, f64::INFINITY)?;
    let log_1mp = p.affine(-1.0, 1.0)?.log()?.clamp(-100.0, f64::INFINITY)?;
    let loss = t.mul(&log_p)?.add(&t.affine(-1.0, 1.0)?.mul(&log_1mp)?)?.neg()?;
    reduce(loss, r)
}

pub fn mse_loss(x: &Tensor, t: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("mse_loss", x, t)?;
    reduce(x.sub(t)?.sqr()?, r)
}

pub fn l1_loss(x: &Tensor, t: &Tensor, r: Reduction) -> Result<Tensor> {
    same_shape("l1_loss", x, t)?;
    reduce(x.sub(t)?.abs()?, r)
}

/// cross_entropy from logits (N, C) and i64 class targets (N), with
/// torch's label smoothing: (1 − ε)·nll + ε·mean over classes of −log p.
pub fn cross_entropy(logits: &Tensor, target: &Tensor, label_smoothing: f64, r: Reduction) -> Result<Tensor> {
    if logits.rank() != 2 || target.shape() != [logits.shape()[0]] {
        return Err(shape_err(
            "cross_entropy",
            format!("expects logits (N, C) and targets (N), got {:?} and {:?}", logits.shape(), target.shape()),
        ));
    }
    let logp = logits.log_softmax(1)?;
    let nll = logp.gather(1, &target.unsqueeze(1)?)?.squeeze(1)?.neg()?;
    let loss = if label_smoothing > 0.0 {
        let smooth = logp.mean(&[1], false)?.neg()?;
        nll.mul_scalar(1.0 - label_smoothing)?.add(&smooth.mul_scalar(label_smoothing)?)?
    } else {
        nll
    };
    reduce(loss, r)
}

/// KL(N(mu, exp(logvar)) ‖ N(0, I)) summed over the latent dim and averaged
/// over the batch: 0.5·Σ(exp(lv) + mu² − 1 − lv) / N.
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    same_shape("gaussian_kl", mu, logvar)?;
    let n = mu.shape().first().copied().unwrap_or(1).max(1);
    logvar.exp()?.add(&mu.sqr()?)?.sub(logvar)?.add_scalar(-1.0)?.sum_all()?.mul_scalar(0.5 / n as f64)
}
