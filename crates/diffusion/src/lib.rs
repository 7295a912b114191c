//! kiln-diffusion: denoising diffusion (Ho et al. 2020) with DDIM sampling
//! (Song et al. 2021) and classifier-free guidance (Ho & Salimans 2022).
//!
//! - `schedule.rs`: β schedules, ᾱ, the posterior's coefficients, DDIM timestep spacings (f64).
//! - `unet.rs`: the U-Net and its sinusoidal time embedding.
//! - `sampler.rs`: the ancestral and DDIM steps and the loop that runs them.
//! - `model.rs`: the config, the training step, EMA weights, sampling.

pub mod model;
pub mod sampler;
pub mod schedule;
pub mod unet;

pub use model::{CLASSES, Ddpm, DdpmConfig, DdpmStats};
pub use sampler::{SamplerKind, SamplerPlan, Variance};
pub use schedule::{BetaSchedule, Prediction, Schedule, Spacing, timesteps};
pub use unet::{UNet, UNetShape, timestep_embedding};
