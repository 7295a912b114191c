//! DCGAN (Radford et al. 2015) as in pytorch/examples/dcgan: a generator of
//! transposed convolutions (k4 s2 p1) with BatchNorm + ReLU and a Tanh
//! output, a discriminator of strided convolutions with LeakyReLU(0.2) and
//! BatchNorm ending in one logit, N(0, 0.02) init, non-saturating
//! BCE-with-logits losses and Adam(2e-4, β = 0.5/0.999).

use kiln_nn::loss::{Reduction, binary_cross_entropy_with_logits};
use kiln_nn::{
    Activation, Adam, AdamConfig, BatchNorm2d, Conv2d, ConvTranspose2d, Init, Module, Path, Sequential, VarStore,
};
use kiln_tensor::{Conv2dParams, ConvTranspose2dParams, DType, Device, Error, Result, Rng, Tensor, no_grad};

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
}

fn one() -> usize {
    1
}

/// pytorch/examples' settings at 32×32 on one channel.
pub const DEFAULT: DcganConfig =
    DcganConfig { nz: 100, ngf: 64, ndf: 64, nc: 1, image_size: 32, lr: 2e-4, beta1: 0.5, real_label: 1.0 };

impl Default for DcganConfig {
    fn default() -> Self {
        DEFAULT
    }
}

/// Number of stride-2 stages between 4×4 and the image size.
fn stages(image_size: usize) -> Result<usize> {
    if !(16..=1024).contains(&image_size) || !image_size.is_power_of_two() {
        return Err(Error::Argument {
            op: "dcgan",
            msg: format!("image size must be a power of two from 16 to 1024, got {image_size}"),
        });
    }
    Ok(image_size.trailing_zeros() as usize - 2)
}

fn up(stride: usize, padding: usize) -> ConvTranspose2dParams {
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
    while mult > 1 {
        seq = seq
            .push(ConvTranspose2d::new(&next(), c.ngf * mult, c.ngf * mult / 2, 4, up(2, 1), false)?)
            .push(BatchNorm2d::new(&next(), c.ngf * mult / 2)?)
            .push({
                next();
                Activation::Relu
            });
        mult /= 2;
    }
    Ok(seq.push(ConvTranspose2d::new(&next(), c.ngf, c.nc, 4, up(2, 1), false)?).push(Activation::Tanh))
}

/// pytorch/examples' Discriminator, returning logits (the sigmoid is in the loss).
pub fn discriminator(p: &Path, c: &DcganConfig) -> Result<Sequential> {
    let n = stages(c.image_size)?;
    let mut i = 0;
    let mut next = || {
        i += 1;
        p.sub(i - 1)
    };
    let mut seq = Sequential::new().push(Conv2d::new(&next(), c.nc, c.ndf, 4, down(2, 1), false)?).push({
        next();
        Activation::LeakyRelu(0.2)
    });
    let mut mult = 1;
    for _ in 1..n {
        seq = seq
            .push(Conv2d::new(&next(), c.ndf * mult, c.ndf * mult * 2, 4, down(2, 1), false)?)
            .push(BatchNorm2d::new(&next(), c.ndf * mult * 2)?)
            .push({
                next();
                Activation::LeakyRelu(0.2)
            });
        mult *= 2;
    }
    Ok(seq.push(Conv2d::new(&next(), c.ndf * mult, 1, 4, down(1, 0), false)?))
}

/// The DCGAN init: conv weights N(0, 0.02), batchnorm weight N(1, 0.02), bias 0.
pub fn dcgan_init(vs: &VarStore) -> Result<()> {
    let root = vs.root();
    for (name, var) in vs.trainable() {
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

/// Generator, discriminator, their stores and optimizers.
pub struct Dcgan {
    pub config: DcganConfig,
    pub g_store: VarStore,
    pub d_store: VarStore,
    pub g: Sequential,
    pub d: Sequential,
    pub opt_g: Adam,
    pub opt_d: Adam,
}

impl Dcgan {
    pub fn new(config: DcganConfig, device: Device, seed: u64) -> Result<Self> {
        let g_store = VarStore::new(device, DType::F32, seed);
        let d_store = VarStore::new(device, DType::F32, seed.wrapping_add(1));
        let g = generator(&g_store.root().sub("main"), &config)?;
        let d = discriminator(&d_store.root().sub("main"), &config)?;
        dcgan_init(&g_store)?;
        dcgan_init(&d_store)?;
        let adam = AdamConfig { lr: config.lr, beta1: config.beta1, beta2: 0.999, ..Default::default() };
        let opt_g = Adam::new(g_store.trainable(), adam)?;
        let opt_d = Adam::new(d_store.trainable(), adam)?;
        Ok(Dcgan { config, g_store, d_store, g, d, opt_g, opt_d })
    }

    /// Latent noise (n, nz, 1, 1) ~ N(0, 1) from `rng`.
    pub fn noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Tensor::randn(&[n, self.config.nz, 1, 1], 0.0, 1.0, DType::F32, self.g_store.device(), rng)
    }

    /// Images in [-1, 1] from noise, in evaluation mode (running statistics).
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        let _g = no_grad();
        self.g.forward(noise, false)
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.d.forward(x, true)?;
        out.reshape(&[out.numel()])
    }

    /// One D step on real and fake, then one G step (pytorch/examples order).
    pub fn train_step(&mut self, real: &Tensor, noise: &Tensor) -> Result<StepStats> {
        let n = real.shape()[0];
        let full = |v: f64| Tensor::full(v, &[n], DType::F32, real.device());
        let mean_prob = |logits: &Tensor| -> Result<f64> { logits.detach().sigmoid()?.mean_all()?.to_scalar() };

        let real_out = self.logits(real)?;
        let err_real =
            binary_cross_entropy_with_logits(&real_out, &full(self.config.real_label)?, None, Reduction::Mean)?;
        let fake = self.g.forward(noise, true)?;
        let fake_out = self.logits(&fake.detach())?;
        let err_fake = binary_cross_entropy_with_logits(&fake_out, &full(0.0)?, None, Reduction::Mean)?;
        let err_d = err_real.add(&err_fake)?;
        let grads_d = err_d.backward()?;
        self.opt_d.step(&grads_d)?;

        let out = self.logits(&fake)?;
        let err_g = binary_cross_entropy_with_logits(&out, &full(1.0)?, None, Reduction::Mean)?;
        let grads_g = err_g.backward()?;
        self.opt_g.step(&grads_g)?;

        Ok(StepStats {
            loss_d: err_d.to_scalar()?,
            loss_g: err_g.to_scalar()?,
            d_x: mean_prob(&real_out)?,
            d_g_z1: mean_prob(&fake_out)?,
            d_g_z2: mean_prob(&out)?,
        })
    }
}
