//! The forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) and the
//! quantities samplers need, in f64 on the host. Timesteps are indices
//! t = 0 … T − 1 everywhere (trainer, network input, samplers), as in
//! improved-diffusion and diffusers: β_t is `betas[t]`, ᾱ_t = Π_{s ≤ t} (1 − β_s),
//! and ᾱ_{−1} = 1 (the clean image).

use kiln_tensor::{Error, Result};

/// How β_t runs from t = 0 to T − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// Ho et al. 2020: β linear from 1e-4 to 0.02 at T = 1000 (both scaled by 1000/T for other T).
    Linear,
    /// Nichol & Dhariwal 2021: ᾱ(t) = cos²(((t/T) + s)/(1 + s) · π/2) with s = 0.008, β capped at 0.999.
    Cosine,
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Prediction {
    /// The noise ε (Ho et al.; the loss is L_simple).
    Eps,
    /// v = √ᾱ ε − √(1 − ᾱ) x_0 (Salimans & Ho 2022).
    V,
}

/// β_t and its running products for one schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f64>,
    /// ᾱ_t for t = 0 … T − 1.
    pub alphas_cumprod: Vec<f64>,
}

impl Schedule {
    pub fn new(kind: BetaSchedule, steps: usize) -> Result<Self> {
        if !(2..=100_000).contains(&steps) {
            return Err(Error::Argument { op: "schedule", msg: format!("T = {steps} must be from 2 to 100000") });
        }
        let t = steps as f64;
        let betas: Vec<f64> = match kind {
            BetaSchedule::Linear => {
                let (lo, hi) = (1e-4 * 1000.0 / t, 0.02 * 1000.0 / t);
                (0..steps).map(|i| lo + (hi - lo) * i as f64 / (t - 1.0)).collect()
            }
            BetaSchedule::Cosine => {
                let abar = |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..steps).map(|i| (1.0 - abar((i + 1) as f64 / t) / abar(i as f64 / t)).min(0.999)).collect()
            }
        };
        let mut alphas_cumprod = Vec::with_capacity(steps);
        let mut prod = 1.0;
        for b in &betas {
            prod *= 1.0 - b;
            alphas_cumprod.push(prod);
        }
        Ok(Schedule { betas, alphas_cumprod })
    }

    /// T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// ᾱ_t, with ᾱ_{−1} = 1 for `t = None`.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }

    /// ᾱ_{t−1} (1 at t = 0).
    pub fn alpha_bar_prev(&self, t: usize) -> f64 {
        self.alpha_bar(t.checked_sub(1))
    }

    /// Variance of the posterior q(x_{t−1} | x_t, x_0): β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t).
    pub fn posterior_variance(&self, t: usize) -> f64 {
        self.betas[t] * (1.0 - self.alpha_bar_prev(t)) / (1.0 - self.alphas_cumprod[t])
    }

    /// The posterior mean's coefficients (c₀, c_t): μ̃ = c₀ x_0 + c_t x_t with
    /// c₀ = β_t √ᾱ_{t−1}/(1 − ᾱ_t), c_t = (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t).
    pub fn posterior_mean_coefs(&self, t: usize) -> (f64, f64) {
        let (abar, prev) = (self.alphas_cumprod[t], self.alpha_bar_prev(t));
        let alpha = 1.0 - self.betas[t];
        (self.betas[t] * prev.sqrt() / (1.0 - abar), (1.0 - prev) * alpha.sqrt() / (1.0 - abar))
    }
}

/// Which T timesteps a DDIM sampler with S steps visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Spacing {
    /// round(T − k·T/S) − 1 for k = 0 … S − 1: starts at T − 1 (diffusers' "trailing").
    Trailing,
    /// round(linspace(0, T − 1, S)): both ends.
    Linspace,
    /// k·(T/S) for k = 0 … S − 1 (DDIM's "uniform", diffusers' "leading"): never visits T − 1 when S < T.
    Leading,
    /// ⌊(k·√(0.8T)/(S − 1))²⌋ for k = 0 … S − 1 (DDIM's quadratic, its CIFAR-10 choice).
    Quadratic,
}

/// The S distinct timesteps of a sampler, from noisiest to cleanest
/// (descending); S = T gives T − 1 … 0 for every spacing but the quadratic
/// one, which stops at 0.8·T and refuses step counts that repeat a timestep.
pub fn timesteps(total: usize, s: usize, spacing: Spacing) -> Result<Vec<usize>> {
    if s == 0 || s > total {
        return Err(Error::Argument { op: "timesteps", msg: format!("{s} steps: must be from 1 to T = {total}") });
    }
    let (t, sf) = (total as f64, s as f64);
    let mut ts: Vec<usize> = match spacing {
        Spacing::Trailing => (0..s).map(|k| ((t - k as f64 * t / sf).round() as usize).saturating_sub(1)).collect(),
        Spacing::Linspace if s == 1 => vec![total - 1],
        Spacing::Linspace => (0..s).map(|k| (k as f64 * (t - 1.0) / (sf - 1.0)).round() as usize).collect(),
        Spacing::Leading => (0..s).map(|k| k * (total / s)).collect(),
        Spacing::Quadratic if s == 1 => vec![0],
        Spacing::Quadratic => (0..s).map(|k| (k as f64 * (0.8 * t).sqrt() / (sf - 1.0)).powi(2) as usize).collect(),
    };
    ts.sort_unstable_by(|a, b| b.cmp(a));
    ts.dedup();
    if ts.len() != s {
        return Err(Error::Argument {
            op: "timesteps",
            msg: format!(
                "{spacing:?} spacing of {s} steps over T = {total} repeats timesteps; use fewer steps or another spacing"
            ),
        });
    }
    Ok(ts)
}
