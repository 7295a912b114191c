//! From 8-bit images to the flow's input, with every log-det counted.
//!
//! An 8-bit value k becomes x = (k + u) / 256 with u ~ U[0, 1) (uniform
//! dequantisation), so a density p on [0, 1)^D bounds the discrete
//! likelihood: −log P(k) ≤ −log p(x) + D ln 256 in expectation over u.
//! bits/dim = (−log p(x) + D ln 256) / (D ln 2). Glow then shifts x to
//! [−½, ½) (log-det 0); RealNVP takes logit(α + (1 − 2α) x).

use kiln_tensor::{Result, Rng, Tensor};

/// The map from dequantised x ∈ [0, 1) to the flow's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preprocess {
    /// y = x − ½ (Glow).
    Shift,
    /// y = logit(α + (1 − 2α) x) (RealNVP).
    Logit { alpha: f64 },
}

impl Preprocess {
    /// (y, log|det ∂y/∂x| per image).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = x.shape()[0];
        let dims: Vec<usize> = (1..x.rank()).collect();
        match *self {
            Preprocess::Shift => Ok((x.add_scalar(-0.5)?, Tensor::zeros(&[n], x.dtype(), x.device())?)),
            Preprocess::Logit { alpha } => {
                let p = x.affine(1.0 - 2.0 * alpha, alpha)?;
                let (log_p, log_q) = (p.log()?, p.neg()?.add_scalar(1.0)?.log()?);
                let d = (x.numel() / n.max(1)) as f64;
                let logdet = log_p.add(&log_q)?.sum(&dims, false)?.neg()?.add_scalar(d * (1.0 - 2.0 * alpha).ln())?;
                Ok((log_p.sub(&log_q)?, logdet))
            }
        }
    }

    pub fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        match *self {
            Preprocess::Shift => y.add_scalar(0.5),
            Preprocess::Logit { alpha } => y.sigmoid()?.affine(1.0 / (1.0 - 2.0 * alpha), -alpha / (1.0 - 2.0 * alpha)),
        }
    }
}

/// Images in [−1, 1] -> (k + u)/256 with k the nearest 8-bit value
/// (exact for images at their own size; a resized image is quantised back
/// to 8 bits, and its bits/dim are those of that quantised image), u from `rng`.
pub fn dequantize(images: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    let v = images.try_to_vec_f64()?;
    let out: Vec<f64> =
        v.iter().map(|&x| (((x + 1.0) * 127.5).round().clamp(0.0, 255.0) + rng.uniform()) / 256.0).collect();
    Tensor::from_f64(&out, images.shape(), images.dtype(), images.device())
}

/// Flow samples x ∈ [0, 1) back to images in [−1, 1].
pub fn to_images(x: &Tensor) -> Result<Tensor> {
    x.clamp(0.0, 1.0)?.affine(2.0, -1.0)
}

/// bits/dim per image from log p(x) in nats of dequantised x ∈ [0, 1)^D.
pub fn bits_per_dim(log_p: &Tensor, dims: usize) -> Result<Tensor> {
    let d = dims as f64;
    log_p.affine(-1.0 / (d * std::f64::consts::LN_2), 8.0)
}
