//! Conditional GAN (Mirza & Osindero 2014) on the DCGAN networks. G takes
//! z concatenated with a learned embedding of the class. D is the DCGAN
//! body with its features φ(x) summed over positions, and the logit
//! w·φ + b + ⟨E(y), φ⟩: the projection discriminator (Miyato & Koyama 2018).
//! Same config, losses and penalties as the DCGAN.

use kiln_nn::{Adam, AdamConfig, Embedding, Init, Linear, Module, Sequential, VarStore};
use kiln_tensor::{DType, Device, Error, Result, Rng, Tensor, no_grad};

use crate::dcgan::{DcganConfig, StepStats, dcgan_init, discriminator_body, generator};
use crate::loss::{GanLoss, d_loss, g_loss, gradient_penalty, r1_penalty};

/// Classes a conditional model knows (MNIST's digits).
pub const CLASSES: usize = 10;
/// Width of G's label embedding, concatenated with z.
pub const LABEL_EMBED: usize = 10;

pub struct Cgan {
    pub config: DcganConfig,
    pub g_store: VarStore,
    pub d_store: VarStore,
    g: Sequential,
    g_embed: Embedding,
    d_body: Sequential,
    d_linear: Linear,
    d_embed: Embedding,
    pub opt_g: Adam,
    pub opt_d: Adam,
}

/// Labels as an i64 index tensor, refusing any outside 0–9.
pub fn label_tensor(labels: &[u8], device: Device) -> Result<Tensor> {
    if let Some(l) = labels.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(Error::Argument { op: "cgan", msg: format!("labels must be 0–{}, got {l}", CLASSES - 1) });
    }
    let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::indices(&ids, &[ids.len()], device)
}

impl Cgan {
    pub fn new(config: DcganConfig, device: Device, seed: u64) -> Result<Self> {
        let g_store = VarStore::new(device, DType::F32, seed);
        let d_store = VarStore::new(device, DType::F32, seed.wrapping_add(1));
        let g_cfg = DcganConfig { nz: config.nz + LABEL_EMBED, ..config.clone() };
        let g = generator(&g_store.root().sub("main"), &g_cfg)?;
        let (d_body, channels, _) = discriminator_body(&d_store.root().sub("main"), &config)?;
        dcgan_init(&g_store)?;
        dcgan_init(&d_store)?;
        // After the DCGAN init (which is for convs and norms): torch's defaults here.
        let g_embed = Embedding::new(&g_store.root().sub("label"), CLASSES, LABEL_EMBED)?;
        let d_linear = Linear::new(&d_store.root().sub("linear"), channels, 1, true)?;
        let d_embed = Embedding::new(&d_store.root().sub("projection"), CLASSES, channels)?;
        d_store.root().reinit("projection.weight", Init::Normal { mean: 0.0, std: 0.02 })?;
        let adam = AdamConfig { lr: config.lr, beta1: config.beta1, beta2: config.beta2, ..Default::default() };
        let opt_g = Adam::new(g_store.trainable(), adam)?;
        let opt_d = Adam::new(d_store.trainable(), adam)?;
        Ok(Cgan { config, g_store, d_store, g, g_embed, d_body, d_linear, d_embed, opt_g, opt_d })
    }

    pub fn noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Tensor::randn(&[n, self.config.nz], 0.0, 1.0, DType::F32, self.g_store.device(), rng)
    }

    fn generate(&self, noise: &Tensor, labels: &Tensor, train: bool) -> Result<Tensor> {
        let n = noise.shape()[0];
        let input = Tensor::cat(&[noise, &self.g_embed.forward(labels, train)?], 1)?;
        self.g.forward(&input.reshape(&[n, self.config.nz + LABEL_EMBED, 1, 1])?, train)
    }

    /// Images in [-1, 1] of the asked classes from noise (n, nz), in evaluation mode.
    pub fn sample(&self, noise: &Tensor, labels: &[u8]) -> Result<Tensor> {
        let _g = no_grad();
        self.generate(noise, &label_tensor(labels, self.g_store.device())?, false)
    }

    /// D's logits (n): w·φ(x) + b + ⟨E(y), φ(x)⟩, φ summed over positions.
    fn logits(&self, x: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let phi = self.d_body.forward(x, true)?.sum(&[2, 3], false)?;
        let linear = self.d_linear.forward(&phi, true)?.squeeze(1)?;
        linear.add(&self.d_embed.forward(labels, true)?.mul(&phi)?.sum(&[1], false)?)
    }

    /// One D step (real images with their labels, generated ones with
    /// theirs), then a G step every `critic_steps()` D steps; as `Dcgan::step`.
    pub fn step(&mut self, real: &Tensor, labels: &[u8], noise: &Tensor, alpha: Option<&Tensor>) -> Result<StepStats> {
        let c = self.config.clone();
        let y = label_tensor(labels, real.device())?;
        let mean_out = |out: &Tensor| -> Result<f64> {
            let out = out.detach();
            let out = if c.loss == GanLoss::Bce { out.sigmoid()? } else { out };
            out.mean_all()?.to_scalar()
        };
        let real_out = self.logits(real, &y)?;
        let fake = self.generate(noise, &y, true)?;
        let fake_out = self.logits(&fake.detach(), &y)?;
        let mut err_d = d_loss(c.loss, &real_out, &fake_out, c.real_label)?;
        let d = |x: &Tensor| self.logits(x, &y);
        if c.loss == GanLoss::WganGp {
            let alpha =
                alpha.ok_or(Error::Argument { op: "cgan", msg: "wgan-gp needs interpolation weights".into() })?;
            err_d = err_d.add(&gradient_penalty(&d, real, &fake, alpha, c.gp_lambda)?)?;
        }
        if c.r1 > 0.0 {
            err_d = err_d.add(&r1_penalty(&d, real, c.r1)?)?;
        }
        self.opt_d.step(&err_d.backward()?)?;
        let (d_x, d_g_z1) = (mean_out(&real_out)?, mean_out(&fake_out)?);
        let (loss_g, d_g_z2) = if self.opt_d.step_count().is_multiple_of(c.critic_steps() as u64) {
            let out = self.logits(&fake, &y)?;
            let err_g = g_loss(c.loss, &out)?;
            self.opt_g.step(&err_g.backward()?)?;
            (err_g.to_scalar()?, mean_out(&out)?)
        } else {
            (g_loss(c.loss, &fake_out.detach())?.to_scalar()?, d_g_z1)
        };
        Ok(StepStats { loss_d: err_d.to_scalar()?, loss_g, d_x, d_g_z1, d_g_z2 })
    }
}
