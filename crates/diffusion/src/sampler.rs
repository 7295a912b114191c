//! Samplers, separate from the network and the schedule (as diffusers
//! separates them): each takes a `denoise(x_t, t)` that returns the
//! network's prediction and turns x_T ~ N(0, I) into x_0. Both clip the
//! predicted x_0 to [−1, 1] and recompute ε from it (improved-diffusion's
//! `clip_denoised`), and both are deterministic given the generator.

use kiln_tensor::{DType, Device, Result, Rng, Tensor, no_grad};

use crate::schedule::{Prediction, Schedule};

/// Which sampler `sample` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Ancestral sampling through all T steps (Ho et al.).
    Ddpm,
    /// DDIM (Song et al. 2021) over S of the T steps, noise scaled by η.
    Ddim,
}

/// The variance of DDPM's ancestral step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Variance {
    /// β̃_t, the true posterior's (the lower bound of Ho et al.).
    Posterior,
    /// β_t (the upper bound).
    Beta,
}

/// The clean image and the noise implied by a network output at timestep t:
/// (x̂_0 clipped to [−1, 1], ε̂ recomputed from it).
pub fn split_prediction(
    schedule: &Schedule,
    prediction: Prediction,
    x_t: &Tensor,
    out: &Tensor,
    t: usize,
) -> Result<(Tensor, Tensor)> {
    let abar = schedule.alpha_bar(Some(t));
    let x0 = match prediction {
        // x_0 = (x_t − √(1 − ᾱ) ε)/√ᾱ.
        Prediction::Eps => x_t.mul_scalar((1.0 / abar).sqrt())?.sub(&out.mul_scalar((1.0 / abar - 1.0).sqrt())?)?,
        // x_0 = √ᾱ x_t − √(1 − ᾱ) v.
        Prediction::V => x_t.mul_scalar(abar.sqrt())?.sub(&out.mul_scalar((1.0 - abar).sqrt())?)?,
    }
    .clamp(-1.0, 1.0)?;
    let eps = x_t.mul_scalar((1.0 / abar).sqrt())?.sub(&x0)?.mul_scalar(1.0 / (1.0 / abar - 1.0).sqrt())?;
    Ok((x0, eps))
}

/// One ancestral step x_t → x_{t−1}: the posterior mean from x̂_0, plus
/// σ z, where `z` is the step's noise (None: the mean, as at t = 0).
pub fn ddpm_step(
    schedule: &Schedule,
    variance: Variance,
    x_t: &Tensor,
    x0: &Tensor,
    t: usize,
    z: Option<&Tensor>,
) -> Result<Tensor> {
    let (c0, ct) = schedule.posterior_mean_coefs(t);
    let mean = x0.mul_scalar(c0)?.add(&x_t.mul_scalar(ct)?)?;
    let var = match variance {
        Variance::Posterior => schedule.posterior_variance(t),
        Variance::Beta => schedule.betas[t],
    };
    match z {
        Some(z) if t > 0 => mean.add(&z.mul_scalar(var.sqrt())?),
        _ => Ok(mean),
    }
}

/// One DDIM step from timestep t to `prev` (None: the clean image, ᾱ = 1):
/// x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z, with
/// σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev); `z` None adds no noise.
pub fn ddim_step(
    schedule: &Schedule,
    eta: f64,
    x0: &Tensor,
    eps: &Tensor,
    t: usize,
    prev: Option<usize>,
    z: Option<&Tensor>,
) -> Result<Tensor> {
    let (abar, abar_prev) = (schedule.alpha_bar(Some(t)), schedule.alpha_bar(prev));
    let sigma = eta * ((1.0 - abar_prev) / (1.0 - abar)).sqrt() * (1.0 - abar / abar_prev).sqrt();
    let dir = (1.0 - abar_prev - sigma * sigma).max(0.0).sqrt();
    let mean = x0.mul_scalar(abar_prev.sqrt())?.add(&eps.mul_scalar(dir)?)?;
    match z {
        Some(z) if sigma > 0.0 => mean.add(&z.mul_scalar(sigma)?),
        _ => Ok(mean),
    }
}

/// How to sample: the kind, its steps and η, the prediction the network makes.
#[derive(Debug, Clone)]
pub struct SamplerPlan {
    pub prediction: Prediction,
    /// Timesteps visited, descending (all of T − 1 … 0 for DDPM).
    pub timesteps: Vec<usize>,
    pub kind: SamplerKind,
    pub eta: f64,
    pub variance: Variance,
}

/// Runs the plan from x_T ~ N(0, I) of `shape`, every draw from `rng`.
/// Returns x_0 and, for each index of `record` (positions in the step
/// sequence, 0 = after the first step), the x_t reached there.
pub fn run_sampler(
    schedule: &Schedule,
    plan: &SamplerPlan,
    shape: &[usize],
    device: Device,
    rng: &mut Rng,
    record: &[usize],
    mut denoise: impl FnMut(&Tensor, usize) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let _g = no_grad();
    let mut x = Tensor::randn(shape, 0.0, 1.0, DType::F32, device, rng)?;
    let mut snapshots = vec![];
    for (i, &t) in plan.timesteps.iter().enumerate() {
        let out = denoise(&x, t)?;
        let (x0, eps) = split_prediction(schedule, plan.prediction, &x, &out, t)?;
        let prev = plan.timesteps.get(i + 1).copied();
        // No noise is added on the last step: draw none, so the generator
        // state after sampling does not depend on it.
        let last = prev.is_none();
        let noisy = !last && (plan.kind == SamplerKind::Ddpm || plan.eta > 0.0);
        let z = if noisy { Some(Tensor::randn(shape, 0.0, 1.0, DType::F32, device, rng)?) } else { None };
        x = match plan.kind {
            SamplerKind::Ddpm => ddpm_step(schedule, plan.variance, &x, &x0, t, z.as_ref())?,
            SamplerKind::Ddim => ddim_step(schedule, plan.eta, &x0, &eps, t, prev, z.as_ref())?,
        };
        if record.contains(&i) {
            snapshots.push(x.clone());
        }
    }
    Ok((x, snapshots))
}
