//! Training and sampling shared by RealNVP and Glow: maximum likelihood
//! in bits/dim on dequantised 8-bit images, Adam with a linear warm-up and
//! gradient-norm clipping, and actnorm's data-dependent initialisation on
//! the first training batch (its flag is a buffer, so checkpoints keep it).

use kiln_nn::{Adam, AdamConfig, VarStore, clip_grad_norm};
use kiln_tensor::{Result, Rng, Tensor, Var, no_grad};

use crate::dequant::{Preprocess, bits_per_dim, dequantize, to_images};
use crate::flow::FlowNet;
use crate::reversible::reversible_grads;

/// The optimiser settings both flows share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    pub lr: f64,
    /// Steps of linear learning-rate warm-up from 0.
    pub warmup: usize,
    /// Clip the gradients' global L2 norm to this (0: measured, not clipped).
    pub clip: f64,
    /// Gradients by the reversible backward (`reversible.rs`): activations
    /// recomputed by inverting each layer instead of stored.
    pub reversible: bool,
}

/// One step's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowStats {
    /// Mean bits/dim of the batch (the loss).
    pub bpd: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

pub struct Flow {
    pub net: FlowNet,
    pub pre: Preprocess,
    pub store: VarStore,
    pub opt: Adam,
    pub training: Training,
    params: Vec<Var>,
    /// 1 once actnorm has seen its first batch.
    initialized: Tensor,
}

impl Flow {
    /// `store` holds `net`'s parameters; the flag buffer is added to it.
    pub fn new(store: VarStore, net: FlowNet, pre: Preprocess, training: Training) -> Result<Self> {
        let initialized = store.root().buffer("actnorm_initialized", &[1], 0.0)?;
        let params = store.trainable().into_iter().map(|(_, v)| v).collect();
        let opt = Adam::new(store.trainable(), AdamConfig { lr: training.lr, ..Default::default() })?;
        Ok(Flow { net, pre, store, opt, training, params, initialized })
    }

    /// Dimensions per image (c·h·w).
    pub fn dims(&self) -> usize {
        self.net.input.iter().product()
    }

    /// log p(x) in nats per image of dequantised x ∈ [0, 1)^D, the
    /// preprocessing's log-det included.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        let (y, logdet) = self.pre.forward(x)?;
        self.net.encode(&y, false)?.log_prob()?.add(&logdet)
    }

    pub fn is_initialized(&self) -> Result<bool> {
        Ok(self.initialized.to_scalar()? != 0.0)
    }

    /// Actnorm's data-dependent initialisation from dequantised x (a no-op once done).
    pub fn initialize(&self, x: &Tensor) -> Result<()> {
        if self.is_initialized()? {
            return Ok(());
        }
        let _g = no_grad();
        self.net.encode(&self.pre.forward(x)?.0, true)?;
        self.initialized.assign(&Tensor::ones(&[1], self.initialized.dtype(), self.initialized.device())?)
    }

    /// One Adam step on the mean bits/dim of images in [−1, 1] (dequantised from `rng`).
    pub fn train_step(&mut self, images: &Tensor, rng: &mut Rng) -> Result<FlowStats> {
        let x = dequantize(images, rng)?;
        self.initialize(&x)?;
        let d = self.dims();
        let (bpd, mut grads) = if self.training.reversible {
            // ∂(mean bits/dim)/∂ log p of each image.
            let coef = -1.0 / (x.shape()[0] as f64 * d as f64 * std::f64::consts::LN_2);
            let (y, pre_log_det) = self.pre.forward(&x)?;
            let (log_p, grads) = reversible_grads(&self.net, &y, coef, &self.params)?;
            (bits_per_dim(&log_p.add(&pre_log_det)?, d)?.mean_all()?, grads)
        } else {
            let loss = bits_per_dim(&self.log_prob(&x)?, d)?.mean_all()?;
            let grads = loss.backward()?;
            (loss, grads)
        };
        let bound = if self.training.clip > 0.0 { self.training.clip } else { f64::INFINITY };
        let grad_norm = clip_grad_norm(&mut grads, &self.params, bound)?;
        let step = self.opt.step_count();
        let t = &self.training;
        let warm = if t.warmup == 0 { 1.0 } else { ((step + 1) as f64 / t.warmup as f64).min(1.0) };
        self.opt.config.lr = t.lr * warm;
        self.opt.step(&grads)?;
        Ok(FlowStats { bpd: bpd.to_scalar()?, grad_norm, lr: self.opt.config.lr })
    }

    /// bits/dim of each image in [−1, 1], dequantised from `rng`.
    pub fn eval_bits_per_dim(&self, images: &Tensor, rng: &mut Rng) -> Result<Vec<f64>> {
        let _g = no_grad();
        let x = dequantize(images, rng)?;
        bits_per_dim(&self.log_prob(&x)?, self.dims())?.try_to_vec_f64()
    }

    /// n images in [−1, 1] at temperature T, every draw from `rng`.
    pub fn sample(&self, n: usize, temperature: f64, rng: &mut Rng) -> Result<Tensor> {
        let _g = no_grad();
        let like = self.initialized.clone();
        to_images(&self.pre.inverse(&self.net.sample(n, temperature, &like, rng)?)?)
    }

    /// f⁻¹(f(x)) of images in [−1, 1] (dequantised from `rng`), back as images.
    pub fn reconstruct(&self, images: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let _g = no_grad();
        let (y, _) = self.pre.forward(&dequantize(images, rng)?)?;
        let latents = self.net.encode(&y, false)?.latents;
        to_images(&self.pre.inverse(&self.net.decode(&latents)?)?)
    }
}
