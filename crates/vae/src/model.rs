//! The networks and the training step. Encoder: conv 4×4 s2 (c → w),
//! conv 4×4 s2 (w → 2w), fc → hidden, fc → (μ, log σ²); decoder: the
//! mirror, fc → fc → two transposed convs 4×4 s2 to the likelihood's
//! parameters (Bernoulli logits or Gaussian means). ReLU, no BatchNorm,
//! torch's default initialisation, Adam.

use kiln_nn::{Activation, Adam, AdamConfig, Conv2d, ConvTranspose2d, Linear, Module, Sequential, VarStore};
use kiln_tensor::{Conv2dParams, ConvTranspose2dParams, DType, Device, Error, Result, Rng, Tensor, Var, no_grad};

use crate::elbo::{HALF_LN_2PI, Likelihood, kl_per_dim, log_likelihood, log_normal_std};

/// The VAE's settings: constructor argument, `train vae` flags, config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Latent dimensions (2 draws the latent manifold map).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.latent, allow_negative_numbers = true))]
    pub latent: usize,
    /// Channels of the first conv (the second has twice as many).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.width, allow_negative_numbers = true))]
    pub width: usize,
    /// Width of the fully connected layer on each side.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.hidden, allow_negative_numbers = true))]
    pub hidden: usize,
    /// p(x|z): bernoulli (dynamically binarized pixels), grey (BCE on grey levels, not a density) or gaussian.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = DEFAULT.likelihood))]
    pub likelihood: Likelihood,
    /// σ of the Gaussian decoder on [0, 1] pixels; 0 learns it.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.sigma, allow_negative_numbers = true))]
    pub sigma: f64,
    /// Weight of the KL term (β-VAE; 1 is the ELBO).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.beta, allow_negative_numbers = true))]
    pub beta: f64,
    /// Ramp the KL weight linearly from 0 to β over this many steps (0: no warm-up).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.kl_warmup, allow_negative_numbers = true))]
    pub kl_warmup: usize,
    /// Free bits: each latent dimension's batch-mean KL counts as at least λ nats (0: off).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.free_bits, allow_negative_numbers = true))]
    pub free_bits: f64,
    /// Adam learning rate.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.lr, allow_negative_numbers = true))]
    pub lr: f64,
    /// Importance samples per held-out image for the final NLL (Burda et al. use 5000).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.iwae_k, allow_negative_numbers = true))]
    pub iwae_k: usize,
    /// Image side, a multiple of 4 from 8 to 128 (28: MNIST as it is).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.image_size, allow_negative_numbers = true))]
    pub image_size: usize,
    /// Image channels: set from the data, not a flag.
    #[cfg_attr(feature = "cli", arg(skip = DEFAULT.channels))]
    #[serde(skip, default = "one")]
    pub channels: usize,
}

fn one() -> usize {
    1
}

pub const DEFAULT: VaeConfig = VaeConfig {
    latent: 16,
    width: 32,
    hidden: 256,
    likelihood: Likelihood::Bernoulli,
    sigma: 0.1,
    beta: 1.0,
    kl_warmup: 0,
    free_bits: 0.0,
    lr: 1e-3,
    iwae_k: 1000,
    image_size: 28,
    channels: 1,
};

impl Default for VaeConfig {
    fn default() -> Self {
        DEFAULT
    }
}

/// One step's numbers, nats per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeStats {
    /// What was minimised: recon + β·w·KL (free bits applied).
    pub loss: f64,
    /// The ELBO, E_q[log p(x|z)] − KL (one sample of z), whatever β.
    pub elbo: f64,
    /// −E_q[log p(x|z)].
    pub recon: f64,
    pub kl: f64,
}

pub struct Vae {
    pub config: VaeConfig,
    pub store: VarStore,
    encoder: Sequential,
    decoder_fc: Sequential,
    decoder_conv: Sequential,
    log_sigma: Option<Var>,
    pub opt: Adam,
}

fn k4s2() -> (Conv2dParams, ConvTranspose2dParams) {
    let c = Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    let t = ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    (c, t)
}

impl Vae {
    pub fn new(config: VaeConfig, device: Device, seed: u64) -> Result<Self> {
        let c = &config;
        if !c.image_size.is_multiple_of(4) || c.image_size < 8 || c.latent == 0 || c.width == 0 || c.hidden == 0 {
            return Err(Error::Argument {
                op: "vae",
                msg: format!(
                    "image size {} must be a multiple of 4 from 8; latent, width, hidden at least 1",
                    c.image_size
                ),
            });
        }
        let store = VarStore::new(device, DType::F32, seed);
        let p = store.root();
        let (conv, up) = k4s2();
        let flat = 2 * c.width * (c.image_size / 4).pow(2);
        let encoder = Sequential::new()
            .push(Conv2d::new(&p.sub("enc.conv1"), c.channels, c.width, 4, conv, true)?)
            .push(Activation::Relu)
            .push(Conv2d::new(&p.sub("enc.conv2"), c.width, 2 * c.width, 4, conv, true)?)
            .push(Activation::Relu)
            .push(Flatten)
            .push(Linear::new(&p.sub("enc.fc"), flat, c.hidden, true)?)
            .push(Activation::Relu)
            .push(Linear::new(&p.sub("enc.head"), c.hidden, 2 * c.latent, true)?);
        let decoder_fc = Sequential::new()
            .push(Linear::new(&p.sub("dec.fc1"), c.latent, c.hidden, true)?)
            .push(Activation::Relu)
            .push(Linear::new(&p.sub("dec.fc2"), c.hidden, flat, true)?)
            .push(Activation::Relu);
        let decoder_conv = Sequential::new()
            .push(ConvTranspose2d::new(&p.sub("dec.conv1"), 2 * c.width, c.width, 4, up, true)?)
            .push(Activation::Relu)
            .push(ConvTranspose2d::new(&p.sub("dec.conv2"), c.width, c.channels, 4, up, true)?);
        let log_sigma = match (c.likelihood, c.sigma) {
            (Likelihood::Gaussian, 0.0) => Some(p.param("log_sigma", &[1], kiln_nn::Init::Const((0.1f64).ln()))?),
            _ => None,
        };
        let opt = Adam::new(store.trainable(), AdamConfig { lr: c.lr, ..Default::default() })?;
        Ok(Vae { config, store, encoder, decoder_fc, decoder_conv, log_sigma, opt })
    }

    /// (μ, log σ²) of q(z|x), each (n, latent), for inputs in [-1, 1].
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.encoder.forward(x, true)?;
        let d = self.config.latent;
        Ok((h.narrow(1, 0, d)?, h.narrow(1, d, d)?))
    }

    /// The likelihood's parameters (Bernoulli logits or Gaussian means), (n, c, s, s).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let h = self.decoder_fc.forward(z, true)?;
        let side = c.image_size / 4;
        self.decoder_conv.forward(&h.reshape(&[z.shape()[0], 2 * c.width, side, side])?, true)
    }

    /// The Gaussian's log σ (shape [1]); None for the Bernoulli likelihoods.
    pub fn log_sigma(&self) -> Result<Option<Tensor>> {
        match (self.config.likelihood, &self.log_sigma) {
            (Likelihood::Gaussian, Some(v)) => Ok(Some(v.as_tensor().clone())),
            (Likelihood::Gaussian, None) => {
                Ok(Some(Tensor::full(self.config.sigma.ln(), &[1], DType::F32, self.store.device())?))
            }
            _ => Ok(None),
        }
    }

    /// What the model is trained to reconstruct from images in [-1, 1]:
    /// intensities p in [0, 1], binarized as x ~ Bernoulli(p) with `rng` for
    /// the Bernoulli likelihood.
    pub fn target(&self, images: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let p = images.affine(0.5, 0.5)?.clamp(0.0, 1.0)?;
        match self.config.likelihood {
            Likelihood::Bernoulli => Tensor::rand(p.shape(), p.dtype(), p.device(), rng)?.lt(&p),
            Likelihood::Grey | Likelihood::Gaussian => Ok(p),
        }
    }

    /// Per image: (log p(x|z) at z = μ + σ·ε, KL per latent dim (n, d)), ε from `rng`.
    pub fn elbo_terms(&self, target: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.encode(&target.affine(2.0, -1.0)?)?;
        let eps = Tensor::randn(mu.shape(), 0.0, 1.0, mu.dtype(), mu.device(), rng)?;
        let z = mu.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?;
        let ll = log_likelihood(self.config.likelihood, &self.decode(&z)?, target, self.log_sigma()?.as_ref())?;
        Ok((ll, kl_per_dim(&mu, &logvar)?))
    }

    /// The KL weight at the optimizer's current step: β, ramped over the warm-up.
    fn kl_weight(&self) -> f64 {
        let w = self.config.kl_warmup;
        let ramp = if w == 0 { 1.0 } else { (self.opt.step_count() as f64 / w as f64).min(1.0) };
        self.config.beta * ramp
    }

    /// One Adam step on −ELBO (with β, warm-up and free bits) of images in [-1, 1].
    pub fn train_step(&mut self, images: &Tensor, rng: &mut Rng) -> Result<VaeStats> {
        let target = self.target(images, rng)?;
        let (ll, kl_dims) = self.elbo_terms(&target, rng)?;
        let recon = ll.mean_all()?.neg()?;
        let kl = kl_dims.sum(&[1], false)?.mean_all()?;
        let kl_term = match self.config.free_bits {
            l if l > 0.0 => kl_dims.mean(&[0], false)?.clamp(l, f64::INFINITY)?.sum_all()?,
            _ => kl.clone(),
        };
        let loss = recon.add(&kl_term.mul_scalar(self.kl_weight())?)?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        let (recon, kl) = (recon.to_scalar()?, kl.to_scalar()?);
        Ok(VaeStats { loss: loss.to_scalar()?, elbo: -(recon + kl), recon, kl })
    }

    /// The ELBO of each target image (one sample of z): (n).
    pub fn elbo(&self, target: &Tensor, rng: &mut Rng) -> Result<Vec<f64>> {
        let _g = no_grad();
        let (ll, kl_dims) = self.elbo_terms(target, rng)?;
        ll.sub(&kl_dims.sum(&[1], false)?)?.try_to_vec_f64()
    }

    /// log w = log p(x|z) + log p(z) − log q(z|x) for `k` draws z = μ + σ·ε
    /// per image: (n, k), the draws in order from `rng`.
    pub fn log_weights(&self, target: &Tensor, k: usize, rng: &mut Rng) -> Result<Tensor> {
        let _g = no_grad();
        let n = target.shape()[0];
        let (mu, logvar) = self.encode(&target.affine(2.0, -1.0)?)?;
        let d = self.config.latent;
        let eps = Tensor::randn(&[n, k, d], 0.0, 1.0, mu.dtype(), mu.device(), rng)?;
        let z = mu.unsqueeze(1)?.add(&logvar.mul_scalar(0.5)?.exp()?.unsqueeze(1)?.mul(&eps)?)?.reshape(&[n * k, d])?;
        let mut rep = target.shape().to_vec();
        rep.insert(1, k);
        let targets = target.unsqueeze(1)?.broadcast_as(&rep)?.reshape(&[n * k, rep[2], rep[3], rep[4]])?;
        let ll = log_likelihood(self.config.likelihood, &self.decode(&z)?, &targets, self.log_sigma()?.as_ref())?;
        let log_p_z = log_normal_std(&z)?;
        // log q(z|x) = Σ −ε²/2 − ln(2π)/2 − log σ.
        let log_q = eps
            .sqr()?
            .mul_scalar(-0.5)?
            .add_scalar(-HALF_LN_2PI)?
            .sub(&logvar.mul_scalar(0.5)?.unsqueeze(1)?)?
            .sum(&[2], false)?;
        ll.add(&log_p_z)?.reshape(&[n, k])?.sub(&log_q)
    }

    /// The importance-weighted estimate of log p(x) (Burda et al. 2016):
    /// log (1/k) Σ w_k, by logsumexp, in chunks of at most `chunk` draws
    /// per image. Each chunk draws its ε as (n, chunk, latent) from `rng`,
    /// so another chunk size gives other (equally valid) draws. Returns one
    /// value per image.
    pub fn iwae(&self, target: &Tensor, k: usize, chunk: usize, rng: &mut Rng) -> Result<Vec<f64>> {
        let mut parts = vec![];
        let mut done = 0;
        while done < k {
            let m = chunk.max(1).min(k - done);
            parts.push(self.log_weights(target, m, rng)?);
            done += m;
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        // logsumexp in f64 on the host (GPU backends compute in f32 only).
        let log_w = Tensor::cat(&refs, 1)?.to_device(Device::Cpu)?.to_dtype(DType::F64)?;
        let lse = log_w.logsumexp(&[1], false)?.try_to_vec_f64()?;
        Ok(lse.into_iter().map(|v| v - (k as f64).ln()).collect())
    }

    /// Images in [-1, 1] of the decoder's means at `z` (n, latent).
    pub fn decode_images(&self, z: &Tensor) -> Result<Tensor> {
        let _g = no_grad();
        let out = self.decode(z)?;
        let p = match self.config.likelihood {
            Likelihood::Bernoulli | Likelihood::Grey => out.sigmoid()?,
            Likelihood::Gaussian => out.clamp(0.0, 1.0)?,
        };
        p.affine(2.0, -1.0)
    }

    /// Prior samples z ~ N(0, I) from `rng`, shown as the decoder's means.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = Tensor::randn(&[n, self.config.latent], 0.0, 1.0, DType::F32, self.store.device(), rng)?;
        self.decode_images(&z)
    }

    /// μ of q(z|x) for images in [-1, 1] (their grey levels, not binarized).
    pub fn encode_mean(&self, images: &Tensor) -> Result<Tensor> {
        let _g = no_grad();
        let p = images.affine(0.5, 0.5)?.clamp(0.0, 1.0)?;
        Ok(self.encode(&p.affine(2.0, -1.0)?)?.0)
    }
}

/// (n, ...) → (n, rest) as a layer.
struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        x.flatten(1, x.rank() - 1)
    }
}
