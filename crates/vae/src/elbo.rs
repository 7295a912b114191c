//! The pieces of the bounds, per image (sums over pixels and latent
//! dimensions): log p(x|z) for each likelihood, log N(z; 0, I), the
//! analytic KL per latent dimension.

use kiln_tensor::loss::{Reduction, binary_cross_entropy_with_logits};
use kiln_tensor::{Result, Tensor};

/// ln(2π)/2.
pub const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// p(x|z) and what x is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// Bernoulli(logits) on dynamically binarized pixels (x ~ Bernoulli(intensity),
    /// redrawn each time an image is used): a normalised density over binary images,
    /// the setting of the published MNIST likelihoods.
    Bernoulli,
    /// Binary cross-entropy against grey levels in [0, 1]: a common loss,
    /// but not a normalised density, so its "nats" are not likelihoods.
    Grey,
    /// N(mean, σ²) per pixel on grey levels in [0, 1], σ fixed (--sigma) or
    /// learned (--sigma 0): a density over continuous values.
    Gaussian,
}

/// log p(target | decoder output) per image: (n, c, h, w) → (n).
/// `log_sigma` (shape [1]) is the Gaussian's log σ.
pub fn log_likelihood(kind: Likelihood, out: &Tensor, target: &Tensor, log_sigma: Option<&Tensor>) -> Result<Tensor> {
    let per_pixel = match (kind, log_sigma) {
        (Likelihood::Bernoulli | Likelihood::Grey, _) => {
            binary_cross_entropy_with_logits(out, target, None, None, Reduction::None)?.neg()?
        }
        (Likelihood::Gaussian, Some(ls)) => {
            let z = target.sub(out)?.mul(&ls.neg()?.exp()?)?;
            z.sqr()?.mul_scalar(-0.5)?.sub(ls)?.add_scalar(-HALF_LN_2PI)?
        }
        (Likelihood::Gaussian, None) => {
            return Err(kiln_tensor::Error::Argument { op: "vae", msg: "a Gaussian decoder needs its log σ".into() });
        }
    };
    per_pixel.sum(&[1, 2, 3], false)
}

/// log N(z; 0, I) per row: (n, d) → (n).
pub fn log_normal_std(z: &Tensor) -> Result<Tensor> {
    z.sqr()?.mul_scalar(-0.5)?.add_scalar(-HALF_LN_2PI)?.sum(&[1], false)
}

/// KL(N(μ, exp(logvar)) ‖ N(0, 1)) per latent dimension: (n, d) → (n, d).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    logvar.exp()?.add(&mu.sqr()?)?.sub(logvar)?.add_scalar(-1.0)?.mul_scalar(0.5)
}
