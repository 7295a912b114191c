//! DCGAN (Radford et al. 2015) as in pytorch/examples/dcgan: a generator of
//! transposed convolutions (k4 s2 p1) with BatchNorm + ReLU and a Tanh
//! output, a discriminator of strided convolutions with LeakyReLU(0.2) and
//! BatchNorm ending in one logit, N(0, 0.02) init, non-saturating
//! BCE-with-logits losses and Adam(2e-4, β = 0.5/0.999).

use kiln_nn::{
    Activation, Adam, AdamConfig, BatchNorm2d, Conv2d, ConvTranspose2d, Ema, Init, LayerNorm, Module, Path, Sequential,
    SpectralNormConv2d, VarStore,
};
use kiln_tensor::{Conv2dParams, ConvTranspose2dParams, DType, Device, Error, Result, Rng, Tensor, no_grad};

use crate::loss::{GanLoss, d_loss, g_loss, gradient_penalty, r1_penalty};
use crate::sagan::SelfAttention;

/// Normalisation in D's hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DNorm {
    /// layer for wgan-gp (a penalty per image must not mix images), batch otherwise.
    Auto,
    Batch,
    Layer,
    None,
}

/// The DCGAN's settings: the constructor's argument, the `train dcgan`
/// flags (with the `cli` feature) and the "config" of a run's config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct DcganConfig {
    /// Latent size (100 in the paper).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.nz, allow_negative_numbers = true))]
    pub nz: usize,
    /// Generator width (channels of its last hidden layer).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.ngf, allow_negative_numbers = true))]
    pub ngf: usize,
    /// Discriminator width (channels of its first layer).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.ndf, allow_negative_numbers = true))]
    pub ndf: usize,
    /// Image channels: set from the data (1 for MNIST), not a flag.
    #[cfg_attr(feature = "cli", arg(skip = DEFAULT.nc))]
    #[serde(skip, default = "one")]
    pub nc: usize,
    /// Image side, a power of two from 16 to 256: 64 is the reference DCGAN, 32 has one stage fewer.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.image_size, allow_negative_numbers = true))]
    pub image_size: usize,
    /// Adam learning rate (both networks).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.lr, allow_negative_numbers = true))]
    pub lr: f64,
    /// Adam beta1 (both networks).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.beta1, allow_negative_numbers = true))]
    pub beta1: f64,
    /// Target for real images in D's loss: 1, or 0.9 for one-sided label smoothing.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.real_label, allow_negative_numbers = true))]
    pub real_label: f64,
    /// Adam beta2 (both networks). WGAN-GP's paper: --lr 1e-4 --beta1 0 --beta2 0.9.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.beta2, allow_negative_numbers = true))]
    #[serde(default = "beta2")]
    pub beta2: f64,
    /// Objective: bce (non-saturating, as pytorch/examples), lsgan, hinge or wgan-gp.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DEFAULT.loss))]
    #[serde(default = "bce")]
    pub loss: GanLoss,
    /// D steps per G step (0: 5 for wgan-gp, 1 otherwise). Each D step takes one batch.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.n_critic, allow_negative_numbers = true))]
    #[serde(default)]
    pub n_critic: usize,
    /// λ of WGAN-GP's gradient penalty.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.gp_lambda, allow_negative_numbers = true))]
    #[serde(default = "ten")]
    pub gp_lambda: f64,
    /// γ of the R1 penalty on real images, with any loss (0: off).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.r1, allow_negative_numbers = true))]
    #[serde(default)]
    pub r1: f64,
    /// Normalisation in D's hidden layers: auto (layer for wgan-gp, none
    /// with --spectral-norm, else batch), batch, layer, none.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DEFAULT.d_norm))]
    #[serde(default = "auto")]
    pub d_norm: DNorm,
    /// Spectral normalisation (torch's spectral_norm) on every weight of D.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub spectral_norm: bool,
    /// SAGAN self-attention in G and D at this resolution (a hidden side: 4 … image size / 2); 0: off.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.self_attention))]
    #[serde(default)]
    pub self_attention: usize,
    /// D's learning rate (TTUR, Heusel et al. 2017); 0: --lr.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.lr_d, allow_negative_numbers = true))]
    #[serde(default)]
    pub lr_d: f64,
    /// G's learning rate; 0: --lr.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.lr_g, allow_negative_numbers = true))]
    #[serde(default)]
    pub lr_g: f64,
    /// Decay of an exponential moving average of G's weights that samples are drawn with (0: off; e.g. 0.999).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.ema, allow_negative_numbers = true))]
    #[serde(default)]
    pub ema: f64,
    /// cgan only: G takes the class through per-class BatchNorm γ, β in every stage instead of an embedding beside z.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub conditional_bn: bool,
}

fn one() -> usize {
    1
}
fn beta2() -> f64 {
    0.999
}
fn bce() -> GanLoss {
    GanLoss::Bce
}
fn ten() -> f64 {
    10.0
}
fn auto() -> DNorm {
    DNorm::Auto
}

impl DcganConfig {
    /// D steps per G step.
    pub fn critic_steps(&self) -> usize {
        match (self.n_critic, self.loss) {
            (0, GanLoss::WganGp) => 5,
            (0, _) => 1,
            (n, _) => n,
        }
    }

    /// D's normalisation with `auto` resolved.
    pub fn d_norm(&self) -> DNorm {
        match (self.d_norm, self.loss) {
            (DNorm::Auto, GanLoss::WganGp) => DNorm::Layer,
            (DNorm::Auto, _) if self.spectral_norm => DNorm::None,
            (DNorm::Auto, _) => DNorm::Batch,
            (n, _) => n,
        }
    }

    /// Adam for G and for D, with the TTUR rates where set.
    pub fn adam(&self) -> (AdamConfig, AdamConfig) {
        let base = AdamConfig { lr: self.lr, beta1: self.beta1, beta2: self.beta2, ..Default::default() };
        let or_lr = |lr: f64| if lr > 0.0 { lr } else { self.lr };
        (AdamConfig { lr: or_lr(self.lr_g), ..base }, AdamConfig { lr: or_lr(self.lr_d), ..base })
    }
}

/// pytorch/examples' settings at 32×32 on one channel.
pub const DEFAULT: DcganConfig = DcganConfig {
    nz: 100,
    ngf: 64,
    ndf: 64,
    nc: 1,
    image_size: 32,
    lr: 2e-4,
    beta1: 0.5,
    real_label: 1.0,
    beta2: 0.999,
    loss: GanLoss::Bce,
    n_critic: 0,
    gp_lambda: 10.0,
    r1: 0.0,
    d_norm: DNorm::Auto,
    spectral_norm: false,
    self_attention: 0,
    lr_d: 0.0,
    lr_g: 0.0,
    ema: 0.0,
    conditional_bn: false,
};

impl Default for DcganConfig {
    fn default() -> Self {
        DEFAULT
    }
}

/// Number of stride-2 stages between 4×4 and the image size.
pub(crate) fn stages(image_size: usize) -> Result<usize> {
    if !(16..=1024).contains(&image_size) || !image_size.is_power_of_two() {
        return Err(Error::Argument {
            op: "dcgan",
            msg: format!("image size must be a power of two from 16 to 1024, got {image_size}"),
        });
    }
    Ok(image_size.trailing_zeros() as usize - 2)
}

pub(crate) fn up(stride: usize, padding: usize) -> ConvTranspose2dParams {
    ConvTranspose2dParams { stride: [stride, stride], padding: [padding, padding], ..Default::default() }
}

fn down(stride: usize, padding: usize) -> Conv2dParams {
    Conv2dParams { stride: [stride, stride], padding: [padding, padding], ..Default::default() }
}

/// pytorch/examples' Generator; module indices match its nn.Sequential.
pub fn generator(p: &Path, c: &DcganConfig) -> Result<Sequential> {
    let n = stages(c.image_size)?;
    let mut mult = 1 << (n - 1);
    let mut i = 0;
    let mut next = || {
        i += 1;
        p.sub(i - 1)
    };
    let mut seq = Sequential::new()
        .push(ConvTranspose2d::new(&next(), c.nz, c.ngf * mult, 4, up(1, 0), false)?)
        .push(BatchNorm2d::new(&next(), c.ngf * mult)?)
        .push({
            next();
            Activation::Relu
        });
    let mut side = 4;
    if c.self_attention == side {
        seq = seq.push(SelfAttention::new(&next(), c.ngf * mult)?);
    }
    while mult > 1 {
        seq = seq
            .push(ConvTranspose2d::new(&next(), c.ngf * mult, c.ngf * mult / 2, 4, up(2, 1), false)?)
            .push(BatchNorm2d::new(&next(), c.ngf * mult / 2)?)
            .push({
                next();
                Activation::Relu
            });
        mult /= 2;
        side *= 2;
        if c.self_attention == side {
            seq = seq.push(SelfAttention::new(&next(), c.ngf * mult)?);
        }
    }
    Ok(seq.push(ConvTranspose2d::new(&next(), c.ngf, c.nc, 4, up(2, 1), false)?).push(Activation::Tanh))
}

/// pytorch/examples' Discriminator, returning logits (the sigmoid is in the loss).
pub fn discriminator(p: &Path, c: &DcganConfig) -> Result<Sequential> {
    let (body, channels, next) = discriminator_body(p, c)?;
    Ok(body.push_boxed(d_conv(&p.sub(next), c, channels, 1, down(1, 0))?))
}

/// The discriminator without its last conv: features (n, channels, 4, 4).
/// Returns the layers, `channels` and the index of the next module.
pub fn discriminator_body(p: &Path, c: &DcganConfig) -> Result<(Sequential, usize, usize)> {
    let n = stages(c.image_size)?;
    let mut i = 0;
    let mut next = || {
        i += 1;
        p.sub(i - 1)
    };
    let mut seq = Sequential::new().push_boxed(d_conv(&next(), c, c.nc, c.ndf, down(2, 1))?).push({
        next();
        Activation::LeakyRelu(0.2)
    });
    let (mut mult, mut side) = (1, c.image_size / 2);
    if c.self_attention == side {
        seq = seq.push(SelfAttention::new(&next(), c.ndf)?);
    }
    for _ in 1..n {
        let ch = c.ndf * mult * 2;
        side /= 2;
        seq = seq.push_boxed(d_conv(&next(), c, c.ndf * mult, ch, down(2, 1))?);
        let norm = next();
        seq = match c.d_norm() {
            DNorm::Layer => seq.push(LayerNorm::new(&norm, &[ch, side, side])?),
            DNorm::None => seq,
            DNorm::Batch | DNorm::Auto => seq.push(BatchNorm2d::new(&norm, ch)?),
        };
        seq = seq.push({
            next();
            Activation::LeakyRelu(0.2)
        });
        mult *= 2;
        if c.self_attention == side {
            seq = seq.push(SelfAttention::new(&next(), c.ndf * mult)?);
        }
    }
    Ok((seq, c.ndf * mult, i))
}

/// One of D's 4×4 convolutions, spectrally normalised with --spectral-norm.
pub fn d_conv(p: &Path, c: &DcganConfig, cin: usize, cout: usize, params: Conv2dParams) -> Result<Box<dyn Module>> {
    Ok(if c.spectral_norm {
        Box::new(SpectralNormConv2d::new(p, cin, cout, 4, params, false)?)
    } else {
        Box::new(Conv2d::new(p, cin, cout, 4, params, false)?)
    })
}

/// The DCGAN init: conv weights N(0, 0.02), batchnorm weight N(1, 0.02),
/// bias 0; self-attention's γ keeps its 0.
pub fn dcgan_init(vs: &VarStore) -> Result<()> {
    let root = vs.root();
    for (name, var) in vs.trainable() {
        if name.ends_with(".gamma") {
            continue;
        }
        let init = match (var.rank(), name.ends_with(".bias")) {
            (4, _) => Init::Normal { mean: 0.0, std: 0.02 },
            (_, false) => Init::Normal { mean: 1.0, std: 0.02 },
            (_, true) => Init::Const(0.0),
        };
        root.reinit(&name, init)?;
    }
    Ok(())
}

/// Losses and discriminator outputs of one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss_d: f64,
    pub loss_g: f64,
    /// Mean D(x) on the real batch.
    pub d_x: f64,
    /// Mean D(G(z)) before the D update, and after it (in the G step).
    pub d_g_z1: f64,
    pub d_g_z2: f64,
}

impl StepStats {
    pub fn is_finite(&self) -> bool {
        [self.loss_d, self.loss_g, self.d_x, self.d_g_z1, self.d_g_z2].iter().all(|v| v.is_finite())
    }
}

/// A moving average of G's weights (--ema) that samples are drawn with: a
/// second generator `net` in its own store, updated after every G step.
pub struct GeneratorEma<M> {
    pub store: VarStore,
    pub net: M,
    pub(crate) ema: Ema,
}

impl<M> GeneratorEma<M> {
    /// `build` makes the generator's layout in a store; None when `decay` is 0.
    pub fn new(
        g_store: &VarStore,
        decay: f64,
        seed: u64,
        build: impl FnOnce(&VarStore) -> Result<M>,
    ) -> Result<Option<Self>> {
        if decay == 0.0 {
            return Ok(None);
        }
        let store = VarStore::new(g_store.device(), g_store.dtype(), seed);
        let net = build(&store)?;
        // (1 + n)/(10 + n) warm-up: a short run is not averaged into its random init.
        let ema = Ema::new(g_store, &store, decay, true)?;
        Ok(Some(GeneratorEma { store, net, ema }))
    }
}

/// Generator, discriminator, their stores and optimizers.
pub struct Dcgan {
    pub config: DcganConfig,
    pub g_store: VarStore,
    pub d_store: VarStore,
    pub g: Sequential,
    pub d: Sequential,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub ema: Option<GeneratorEma<Sequential>>,
}

impl Dcgan {
    pub fn new(config: DcganConfig, device: Device, seed: u64) -> Result<Self> {
        let g_store = VarStore::new(device, DType::F32, seed);
        let d_store = VarStore::new(device, DType::F32, seed.wrapping_add(1));
        let g = generator(&g_store.root().sub("main"), &config)?;
        let d = discriminator(&d_store.root().sub("main"), &config)?;
        dcgan_init(&g_store)?;
        dcgan_init(&d_store)?;
        let (adam_g, adam_d) = config.adam();
        let opt_g = Adam::new(g_store.trainable(), adam_g)?;
        let opt_d = Adam::new(d_store.trainable(), adam_d)?;
        let ema = GeneratorEma::new(&g_store, config.ema, seed.wrapping_add(2), |vs| {
            generator(&vs.root().sub("main"), &config)
        })?;
        Ok(Dcgan { config, g_store, d_store, g, d, opt_g, opt_d, ema })
    }

    /// Latent noise (n, nz, 1, 1) ~ N(0, 1) from `rng`.
    pub fn noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Tensor::randn(&[n, self.config.nz, 1, 1], 0.0, 1.0, DType::F32, self.g_store.device(), rng)
    }

    /// Images in [-1, 1] from noise, in evaluation mode (running
    /// statistics), by the averaged generator with --ema.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        let _g = no_grad();
        self.ema.as_ref().map_or(&self.g, |e| &e.net).forward(noise, false)
    }

    /// One D step on real and fake, then one G step (pytorch/examples
    /// order) with the config's loss; no penalty needs random numbers here
    /// (WGAN-GP's interpolation weights do: use `step`).
    pub fn train_step(&mut self, real: &Tensor, noise: &Tensor) -> Result<StepStats> {
        self.step(real, noise, None)
    }

    /// One D step (its loss, plus WGAN-GP's penalty on interpolates with
    /// weights `alpha` (n, 1, 1, 1) and R1 on the real batch), then a G step
    /// every `critic_steps()` D steps: `adversarial_step`.
    pub fn step(&mut self, real: &Tensor, noise: &Tensor, alpha: Option<&Tensor>) -> Result<StepStats> {
        let fake = self.g.forward(noise, true)?;
        let net = &self.d;
        let d = |x: &Tensor| -> Result<Tensor> {
            let out = net.forward(x, true)?;
            out.reshape(&[out.numel()])
        };
        let ema = self.ema.as_ref().map(|e| &e.ema);
        adversarial_step(&self.config, &d, real, &fake, alpha, &mut self.opt_d, &mut self.opt_g, ema)
    }
}

/// The training step the DCGAN and the conditional GAN share, after G has
/// made `fake` (with its graph): one D step on D's loss (plus WGAN-GP's
/// penalty on interpolates with weights `alpha`, and R1 on the real batch),
/// then a G step every `critic_steps()` D steps (counted by D's optimizer,
/// so runs resume). `d` maps images to D's outputs, its conditioning bound.
/// Without a G step, loss_g is G's loss on this batch under the D before
/// its update, and d_g_z2 = d_g_z1. Mean D outputs are probabilities for
/// BCE and raw scores for the other losses. `ema` (--ema) follows every G
/// step, numbered by G's optimizer so a resumed run continues its decays.
#[allow(clippy::too_many_arguments)]
pub(crate) fn adversarial_step(
    c: &DcganConfig,
    d: &dyn Fn(&Tensor) -> Result<Tensor>,
    real: &Tensor,
    fake: &Tensor,
    alpha: Option<&Tensor>,
    opt_d: &mut Adam,
    opt_g: &mut Adam,
    ema: Option<&Ema>,
) -> Result<StepStats> {
    let mean_out = |out: &Tensor| -> Result<f64> {
        let out = out.detach();
        let out = if c.loss == GanLoss::Bce { out.sigmoid()? } else { out };
        out.mean_all()?.to_scalar()
    };
    let real_out = d(real)?;
    let fake_out = d(&fake.detach())?;
    let mut err_d = d_loss(c.loss, &real_out, &fake_out, c.real_label)?;
    if c.loss == GanLoss::WganGp {
        let alpha = alpha.ok_or(Error::Argument {
            op: "gan step",
            msg: "wgan-gp needs interpolation weights (one per image: the step's alpha)".into(),
        })?;
        err_d = err_d.add(&gradient_penalty(d, real, fake, alpha, c.gp_lambda)?)?;
    }
    if c.r1 > 0.0 {
        err_d = err_d.add(&r1_penalty(d, real, c.r1)?)?;
    }
    opt_d.step(&err_d.backward()?)?;
    let (d_x, d_g_z1) = (mean_out(&real_out)?, mean_out(&fake_out)?);
    let (loss_g, d_g_z2) = if opt_d.step_count().is_multiple_of(c.critic_steps() as u64) {
        let out = d(fake)?;
        let err_g = g_loss(c.loss, &out)?;
        opt_g.step(&err_g.backward()?)?;
        if let Some(ema) = ema {
            ema.update(opt_g.step_count() - 1)?;
        }
        (err_g.to_scalar()?, mean_out(&out)?)
    } else {
        (g_loss(c.loss, &fake_out.detach())?.to_scalar()?, d_g_z1)
    };
    Ok(StepStats { loss_d: err_d.to_scalar()?, loss_g, d_x, d_g_z1, d_g_z2 })
}
