//! Conditional GAN (Mirza & Osindero 2014) on the DCGAN networks. G takes
//! z concatenated with a learned embedding of the class. D is the DCGAN
//! body with its features φ(x) summed over positions, and the logit
//! w·φ + b + ⟨E(y), φ⟩: the projection discriminator (Miyato & Koyama 2018).
//! Same config, losses and penalties as the DCGAN. `--conditional-bn`
//! feeds the class to G through per-class batch norm instead (cond_bn.rs).

use kiln_nn::{Adam, Embedding, Init, Linear, Module, Sequential, SpectralNormLinear, VarStore};
use kiln_tensor::{DType, Device, Error, Result, Rng, Tensor, no_grad};

use crate::cond_bn::ConditionalGenerator;
use crate::dcgan::{DcganConfig, GeneratorEma, StepStats, adversarial_step, dcgan_init, discriminator_body, generator};

/// Classes a conditional model knows (MNIST's digits).
pub const CLASSES: usize = 10;
/// Width of G's label embedding, concatenated with z.
pub const LABEL_EMBED: usize = 10;

/// G: the DCGAN generator fed z ⊕ embed(y), or with --conditional-bn
/// the class in every stage's batch norm.
pub enum CganGenerator {
    Embedding { main: Sequential, label: Embedding, nz: usize },
    ConditionalBn(ConditionalGenerator),
}

impl CganGenerator {
    /// The DCGAN init on the convolutions and norms, torch's default on the
    /// label embedding; conditional batch norm's β back at 0 after it.
    fn new(vs: &VarStore, config: &DcganConfig) -> Result<Self> {
        if config.conditional_bn {
            let g = ConditionalGenerator::new(&vs.root().sub("main"), config, CLASSES)?;
            dcgan_init(vs)?;
            for (name, _) in vs.trainable().into_iter().filter(|(n, _)| n.ends_with(".beta.weight")) {
                vs.root().reinit(&name, Init::Const(0.0))?;
            }
            return Ok(CganGenerator::ConditionalBn(g));
        }
        let g_cfg = DcganConfig { nz: config.nz + LABEL_EMBED, ..config.clone() };
        let main = generator(&vs.root().sub("main"), &g_cfg)?;
        dcgan_init(vs)?;
        let label = Embedding::new(&vs.root().sub("label"), CLASSES, LABEL_EMBED)?;
        Ok(CganGenerator::Embedding { main, label, nz: config.nz })
    }

    fn forward(&self, noise: &Tensor, labels: &Tensor, train: bool) -> Result<Tensor> {
        let n = noise.shape()[0];
        match self {
            CganGenerator::Embedding { main, label, nz } => {
                let input = Tensor::cat(&[noise, &label.forward(labels, train)?], 1)?;
                main.forward(&input.reshape(&[n, nz + LABEL_EMBED, 1, 1])?, train)
            }
            CganGenerator::ConditionalBn(g) => g.forward(&noise.reshape(&[n, noise.shape()[1], 1, 1])?, labels, train),
        }
    }
}

pub struct Cgan {
    pub config: DcganConfig,
    pub g_store: VarStore,
    pub d_store: VarStore,
    g: CganGenerator,
    d_body: Sequential,
    d_linear: Box<dyn Module>,
    d_embed: Embedding,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub ema: Option<GeneratorEma<CganGenerator>>,
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
        let g = CganGenerator::new(&g_store, &config)?;
        let (d_body, channels, _) = discriminator_body(&d_store.root().sub("main"), &config)?;
        dcgan_init(&d_store)?;
        // After the DCGAN init (which is for convs and norms): torch's defaults here.
        let linear = d_store.root().sub("linear");
        let d_linear: Box<dyn Module> = if config.spectral_norm {
            Box::new(SpectralNormLinear::new(&linear, channels, 1, true)?)
        } else {
            Box::new(Linear::new(&linear, channels, 1, true)?)
        };
        let d_embed = Embedding::new(&d_store.root().sub("projection"), CLASSES, channels)?;
        d_store.root().reinit("projection.weight", Init::Normal { mean: 0.0, std: 0.02 })?;
        let (adam_g, adam_d) = config.adam();
        let opt_g = Adam::new(g_store.trainable(), adam_g)?;
        let opt_d = Adam::new(d_store.trainable(), adam_d)?;
        let ema = GeneratorEma::new(&g_store, config.ema, seed.wrapping_add(2), |vs| CganGenerator::new(vs, &config))?;
        Ok(Cgan { config, g_store, d_store, g, d_body, d_linear, d_embed, opt_g, opt_d, ema })
    }

    pub fn noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Tensor::randn(&[n, self.config.nz], 0.0, 1.0, DType::F32, self.g_store.device(), rng)
    }

    /// Images in [-1, 1] of the asked classes from noise (n, nz), in
    /// evaluation mode, by the averaged generator with --ema.
    pub fn sample(&self, noise: &Tensor, labels: &[u8]) -> Result<Tensor> {
        let _g = no_grad();
        let g = self.ema.as_ref().map_or(&self.g, |e| &e.net);
        g.forward(noise, &label_tensor(labels, self.g_store.device())?, false)
    }

    /// One D step (real images with their labels, generated ones with
    /// theirs), then a G step every `critic_steps()` D steps: the DCGAN's
    /// `adversarial_step` with D's outputs conditioned on `labels`.
    pub fn step(&mut self, real: &Tensor, labels: &[u8], noise: &Tensor, alpha: Option<&Tensor>) -> Result<StepStats> {
        let y = label_tensor(labels, real.device())?;
        let fake = self.g.forward(noise, &y, true)?;
        // D's logits: w·φ(x) + b + ⟨E(y), φ(x)⟩, φ summed over positions.
        let (body, linear, embed) = (&self.d_body, &self.d_linear, &self.d_embed);
        let d = |x: &Tensor| -> Result<Tensor> {
            let phi = body.forward(x, true)?.sum(&[2, 3], false)?;
            let w_phi = linear.forward(&phi, true)?.squeeze(1)?;
            w_phi.add(&embed.forward(&y, true)?.mul(&phi)?.sum(&[1], false)?)
        };
        let ema = self.ema.as_ref().map(|e| &e.ema);
        adversarial_step(&self.config, &d, real, &fake, alpha, &mut self.opt_d, &mut self.opt_g, ema)
    }
}
