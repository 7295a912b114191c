//! The model: config, U-Net and its EMA copy, the training step on
//! L_simple, and sampling with the EMA weights.

use kiln_nn::{Adam, AdamConfig, Ema, VarStore, clip_grad_norm};
use kiln_tensor::{DType, Device, Error, Result, Rng, Tensor, Var, no_grad};

use crate::sampler::{SamplerKind, SamplerPlan, Variance, run_sampler};
use crate::schedule::{BetaSchedule, Prediction, Schedule, Spacing, timesteps};
use crate::unet::{UNet, UNetShape};

/// Classes of a conditional model (the digits); label 10 is the null label.
pub const CLASSES: usize = 10;

/// The DDPM's settings: constructor argument, `train ddpm` flags, config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct DdpmConfig {
    /// Channels of the U-Net's first level.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 16, allow_negative_numbers = true))]
    pub base: usize,
    /// Channel multiplier per level (levels after the first halve the resolution).
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = "1,2,2"))]
    pub mults: Vec<usize>,
    /// Residual blocks per level.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, allow_negative_numbers = true))]
    pub res_blocks: usize,
    /// Resolutions with self-attention (the middle always has it); e.g. 7 or 14,7.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', default_value = "7"))]
    pub attention: Vec<usize>,
    /// GroupNorm groups (must divide --base).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 8, allow_negative_numbers = true))]
    pub groups: usize,
    /// Dropout in the residual blocks (DDPM used 0.1 on CIFAR-10; a 10-minute run underfits, so 0).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0, allow_negative_numbers = true))]
    pub dropout: f64,
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = BetaSchedule::Linear))]
    pub schedule: BetaSchedule,
    /// Diffusion steps T.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1000, allow_negative_numbers = true))]
    pub timesteps: usize,
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Prediction::Eps))]
    pub prediction: Prediction,
    /// Adam learning rate (after the warm-up).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1e-3, allow_negative_numbers = true))]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up from 0.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 200, allow_negative_numbers = true))]
    pub warmup: usize,
    /// Clip the gradients' global L2 norm to this (0: no clipping).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1.0, allow_negative_numbers = true))]
    pub clip: f64,
    /// EMA decay of the weights sampled with (with the (1 + n)/(10 + n) warm-up); 0 samples the raw weights.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.999, allow_negative_numbers = true))]
    pub ema: f64,
    /// Class-conditional with classifier-free guidance (label embedding added to the time embedding).
    #[cfg_attr(feature = "cli", arg(long))]
    pub conditional: bool,
    /// Conditional training: probability of replacing a label with the null label.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.1, allow_negative_numbers = true))]
    pub p_uncond: f64,
    /// Guidance scale s: ε = ε_u + s (ε_c − ε_u), so 1 is the conditional model alone and 0 the
    /// unconditional one (the papers' w is s − 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2.0, allow_negative_numbers = true))]
    pub guidance: f64,
    /// Sampler for grids and evaluations (`sample ddpm --sampler` overrides it).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = SamplerKind::Ddim))]
    pub sampler: SamplerKind,
    /// DDIM steps S for grids and evaluations (DDPM always takes T).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 20, allow_negative_numbers = true))]
    pub sample_steps: usize,
    /// DDIM's η (0: deterministic; 1: DDPM-like noise).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0, allow_negative_numbers = true))]
    pub eta: f64,
    /// Which timesteps DDIM visits.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Spacing::Trailing))]
    pub spacing: Spacing,
    /// DDPM's ancestral variance.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = Variance::Posterior))]
    pub variance: Variance,
    /// Image side, divisible by 2^(levels − 1) (28: MNIST as it is).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 28, allow_negative_numbers = true))]
    pub image_size: usize,
    /// Image channels: set from the data, not a flag.
    #[cfg_attr(feature = "cli", arg(skip = 1usize))]
    #[serde(skip, default = "one")]
    pub channels: usize,
}

fn one() -> usize {
    1
}

impl Default for DdpmConfig {
    fn default() -> Self {
        DdpmConfig {
            base: 16,
            mults: vec![1, 2, 2],
            res_blocks: 2,
            attention: vec![7],
            groups: 8,
            dropout: 0.0,
            schedule: BetaSchedule::Linear,
            timesteps: 1000,
            prediction: Prediction::Eps,
            lr: 1e-3,
            warmup: 200,
            clip: 1.0,
            ema: 0.999,
            conditional: false,
            p_uncond: 0.1,
            guidance: 2.0,
            sampler: SamplerKind::Ddim,
            sample_steps: 20,
            eta: 0.0,
            spacing: Spacing::Trailing,
            variance: Variance::Posterior,
            image_size: 28,
            channels: 1,
        }
    }
}

impl DdpmConfig {
    pub fn unet_shape(&self) -> UNetShape {
        UNetShape {
            channels: self.channels,
            image_size: self.image_size,
            base: self.base,
            mults: self.mults.clone(),
            res_blocks: self.res_blocks,
            attention: self.attention.clone(),
            groups: self.groups,
            dropout: self.dropout,
            classes: if self.conditional { CLASSES } else { 0 },
        }
    }

    /// The sampler this config asks for.
    pub fn plan(&self) -> Result<SamplerPlan> {
        let ts = match self.sampler {
            SamplerKind::Ddpm => (0..self.timesteps).rev().collect(),
            SamplerKind::Ddim => timesteps(self.timesteps, self.sample_steps, self.spacing)?,
        };
        Ok(SamplerPlan {
            prediction: self.prediction,
            timesteps: ts,
            kind: self.sampler,
            eta: self.eta,
            variance: self.variance,
        })
    }
}

/// One step's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmStats {
    /// Mean squared error of the prediction (L_simple for ε-prediction).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate of this step (warm-up).
    pub lr: f64,
}

pub struct Ddpm {
    pub config: DdpmConfig,
    pub schedule: Schedule,
    pub store: VarStore,
    /// The averaged weights sampling uses (the same layout as `store`).
    pub ema_store: VarStore,
    net: UNet,
    ema_net: UNet,
    ema: Ema,
    params: Vec<Var>,
    pub opt: Adam,
}

impl Ddpm {
    pub fn new(config: DdpmConfig, device: Device, seed: u64) -> Result<Self> {
        let schedule = Schedule::new(config.schedule, config.timesteps)?;
        let shape = config.unet_shape();
        let store = VarStore::new(device, DType::F32, seed);
        let net = UNet::new(&store.root(), &shape)?;
        let ema_store = VarStore::new(device, DType::F32, seed);
        let ema_net = UNet::new(&ema_store.root(), &shape)?;
        let ema = Ema::new(&store, &ema_store, config.ema, true)?;
        let params = store.trainable().into_iter().map(|(_, v)| v).collect();
        let opt = Adam::new(store.trainable(), AdamConfig { lr: config.lr, ..Default::default() })?;
        Ok(Ddpm { config, schedule, store, ema_store, net, ema_net, ema, params, opt })
    }

    /// (√ᾱ_t, √(1 − ᾱ_t)) per image, each an (n, 1, 1, 1) tensor.
    fn signal_noise(&self, t: &[usize], device: Device) -> Result<(Tensor, Tensor)> {
        let n = t.len();
        let coef = |f: fn(f64) -> f64| {
            let v: Vec<f32> = t.iter().map(|&t| f(self.schedule.alpha_bar(Some(t))) as f32).collect();
            Tensor::from_vec(v, &[n, 1, 1, 1], device)
        };
        Ok((coef(f64::sqrt)?, coef(|abar| (1.0 - abar).sqrt())?))
    }

    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, one t per image.
    pub fn q_sample(&self, x0: &Tensor, t: &[usize], eps: &Tensor) -> Result<Tensor> {
        let (a, b) = self.signal_noise(t, x0.device())?;
        x0.mul(&a)?.add(&eps.mul(&b)?)
    }

    /// The mean squared error of `net` on clean images in [−1, 1] at
    /// timesteps `t` with noise `eps` (one scalar tensor).
    fn loss(
        &self,
        net: &UNet,
        x0: &Tensor,
        labels: Option<&[usize]>,
        t: &[usize],
        eps: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (a, b) = self.signal_noise(t, x0.device())?;
        let x_t = x0.mul(&a)?.add(&eps.mul(&b)?)?;
        // The training target: ε, or v = √ᾱ ε − √(1 − ᾱ) x_0.
        let target = match self.config.prediction {
            Prediction::Eps => eps.clone(),
            Prediction::V => eps.mul(&a)?.sub(&x0.mul(&b)?)?,
        };
        let tf: Vec<f64> = t.iter().map(|&t| t as f64).collect();
        net.forward(&x_t, &tf, labels, train)?.sub(&target)?.sqr()?.mean_all()
    }

    /// One timestep per image, then the noise, from `rng`.
    fn draw_t_eps(&self, x0: &Tensor, rng: &mut Rng) -> Result<(Vec<usize>, Tensor)> {
        let t: Vec<usize> = (0..x0.shape()[0]).map(|_| rng.below(self.config.timesteps as u64) as usize).collect();
        Ok((t, Tensor::randn(x0.shape(), 0.0, 1.0, x0.dtype(), x0.device(), rng)?))
    }

    /// Timesteps, noise and (conditional models, with label dropout) labels for a training batch.
    fn draw(&self, x0: &Tensor, labels: &[u8], rng: &mut Rng) -> Result<(Vec<usize>, Tensor, Option<Vec<usize>>)> {
        let n = x0.shape()[0];
        let (t, eps) = self.draw_t_eps(x0, rng)?;
        let y = match self.config.conditional {
            false => None,
            true if labels.len() != n => {
                return Err(Error::Argument { op: "ddpm", msg: format!("{} labels for a batch of {n}", labels.len()) });
            }
            true => Some(
                labels
                    .iter()
                    .map(
                        |&k| if rng.uniform() < self.config.p_uncond { CLASSES } else { (k as usize).min(CLASSES - 1) },
                    )
                    .collect(),
            ),
        };
        Ok((t, eps, y))
    }

    /// One Adam step on the prediction's MSE for images in [−1, 1], then the EMA update.
    pub fn train_step(&mut self, x0: &Tensor, labels: &[u8], rng: &mut Rng) -> Result<DdpmStats> {
        let (t, eps, y) = self.draw(x0, labels, rng)?;
        let loss = self.loss(&self.net, x0, y.as_deref(), &t, &eps, true)?;
        let mut grads = loss.backward()?;
        // --clip 0 still measures the norm (an infinite bound never scales).
        let bound = if self.config.clip > 0.0 { self.config.clip } else { f64::INFINITY };
        let grad_norm = clip_grad_norm(&mut grads, &self.params, bound)?;
        let step = self.opt.step_count();
        let warm = if self.config.warmup == 0 { 1.0 } else { ((step + 1) as f64 / self.config.warmup as f64).min(1.0) };
        self.opt.config.lr = self.config.lr * warm;
        self.opt.step(&grads)?;
        if self.config.ema > 0.0 {
            self.ema.update(step)?;
        }
        Ok(DdpmStats { loss: loss.to_scalar()?, grad_norm, lr: self.opt.config.lr })
    }

    /// The network sampling uses: the EMA copy, or the raw weights when --ema 0.
    fn sampling_net(&self) -> &UNet {
        if self.config.ema > 0.0 { &self.ema_net } else { &self.net }
    }

    /// The sampling network's MSE on clean images at timesteps and noise
    /// drawn from `rng` (one t per image), in evaluation mode.
    pub fn eval_loss(&self, x0: &Tensor, labels: &[u8], rng: &mut Rng) -> Result<f64> {
        let _g = no_grad();
        let (t, eps) = self.draw_t_eps(x0, rng)?;
        let y: Option<Vec<usize>> =
            self.config.conditional.then(|| labels.iter().map(|&k| (k as usize).min(CLASSES - 1)).collect());
        self.loss(self.sampling_net(), x0, y.as_deref(), &t, &eps, false)?.to_scalar()
    }

    /// The network's output at x_t and timestep t (the same for the whole
    /// batch), with classifier-free guidance for a conditional model.
    fn denoise(&self, x: &Tensor, t: usize, labels: Option<&[usize]>) -> Result<Tensor> {
        let net = self.sampling_net();
        let n = x.shape()[0];
        let tf = vec![t as f64; n];
        let Some(y) = labels else { return net.forward(x, &tf, None, false) };
        let s = self.config.guidance;
        let null = vec![CLASSES; n];
        if s == 1.0 {
            return net.forward(x, &tf, Some(y), false);
        }
        if s == 0.0 {
            return net.forward(x, &tf, Some(&null), false);
        }
        // One pass over [x; x] with [y; null].
        let both =
            net.forward(&Tensor::cat(&[x, x], 0)?, &[tf.clone(), tf].concat(), Some(&[y, &null[..]].concat()), false)?;
        let (cond, uncond) = (both.narrow(0, 0, n)?, both.narrow(0, n, n)?);
        uncond.add(&cond.sub(&uncond)?.mul_scalar(s)?)
    }

    /// `labels.len()` (or `n` unconditional) images in [−1, 1] from the
    /// config's sampler, every draw from `rng`; also x_t after the steps
    /// listed in `record`.
    pub fn sample_with(
        &self,
        n: usize,
        labels: Option<&[usize]>,
        rng: &mut Rng,
        record: &[usize],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if self.config.conditional != labels.is_some() {
            return Err(Error::Argument {
                op: "ddpm sample",
                msg: format!(
                    "a {}conditional model needs {}labels",
                    if self.config.conditional { "" } else { "un" },
                    if self.config.conditional { "" } else { "no " }
                ),
            });
        }
        let c = &self.config;
        let shape = [labels.map_or(n, <[usize]>::len), c.channels, c.image_size, c.image_size];
        let plan = c.plan()?;
        let (x, snaps) = run_sampler(&self.schedule, &plan, &shape, self.store.device(), rng, record, |x, t| {
            self.denoise(x, t, labels)
        })?;
        Ok((x.clamp(-1.0, 1.0)?, snaps))
    }
}
