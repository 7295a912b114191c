//! `train vae`: kiln-vae's VAE as a recipe. Held-out numbers: the ELBO
//! at every evaluation, the importance-weighted NLL (k = --iwae-k) in full
//! evaluations (the end of a run, `eval`). The held-out digits are
//! binarized once per evaluation from its generator.

use kiln_nn::{Adam, VarStore};
use kiln_tensor::{Rng, Tensor};
use kiln_vae::pictures::{interpolations, manifold, reconstructions};
use kiln_vae::{Vae, VaeConfig};

use crate::Result;
use crate::config::{at_least_one, flag, positive, within};
use crate::recipe::{Batch, HeldOut, Picture, Plot, Recipe, Setup};

/// Held-out images per forward pass, and importance samples per image per pass.
const EVAL_BATCH: usize = 500;
const IWAE_CHUNK: usize = 4096;

impl Recipe for Vae {
    const NAME: &'static str = "vae";
    /// About 10 minutes on a 2-core CPU with the final k = 1000 IWAE (see README).
    const DEFAULT_STEPS: usize = 8000;
    const DEFAULT_BATCH: usize = 128;
    type Config = VaeConfig;

    fn check(c: &VaeConfig) -> Result<()> {
        for (key, v) in [("latent", c.latent), ("width", c.width), ("hidden", c.hidden), ("iwae_k", c.iwae_k)] {
            at_least_one(key, v)?;
            if v > 100_000 {
                return Err(format!("{} {v}: at most 100000", flag(key)).into());
            }
        }
        if !(8..=128).contains(&c.image_size) || !c.image_size.is_multiple_of(4) {
            return Err(format!("--image-size {}: must be a multiple of 4 from 8 to 128", c.image_size).into());
        }
        positive("lr", c.lr)?;
        within("beta", c.beta, 0.0, 1e6)?;
        within("free_bits", c.free_bits, 0.0, 1e3)?;
        // σ is read by the Gaussian decoder only, but a bad value is refused whatever the likelihood.
        within("sigma", c.sigma, 0.0, 1e6)
    }

    fn image_size(c: &VaeConfig) -> usize {
        c.image_size
    }

    fn build(c: &VaeConfig, setup: &Setup) -> Result<Self> {
        Ok(Vae::new(VaeConfig { channels: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn stat_names() -> &'static [&'static str] {
        &["loss", "elbo", "recon", "kl"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let s = Vae::train_step(self, &batch.images, rng)?;
        Ok(vec![s.loss, s.elbo, s.recon, s.kl])
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("vae", &self.store)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }

    fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(Vae::sample(self, n, rng)?)
    }

    fn eval_names() -> &'static [&'static str] {
        &["held_out_elbo", "held_out_nll"]
    }

    /// Mean ELBO (one z per digit) and, when `full`, mean −IWAE bound, in
    /// nats. The ELBO pass draws first, so quick and full evaluations
    /// binarize the digits alike and agree on the ELBO.
    fn evaluate(&self, held_out: &HeldOut, rng: &mut Rng, full: bool) -> Result<Vec<Option<f64>>> {
        if held_out.set.n == 0 {
            return Ok(vec![None, None]);
        }
        let (mut targets, mut elbo) = (vec![], 0.0);
        for batch in held_out.batches(EVAL_BATCH) {
            let target = self.target(&batch?.images, rng)?;
            elbo += self.elbo(&target, rng)?.iter().sum::<f64>();
            targets.push(target);
        }
        let n = held_out.set.n.max(1) as f64;
        let mut nll = 0.0;
        for target in targets.iter().filter(|_| full) {
            let chunk = (IWAE_CHUNK / target.shape()[0]).max(1);
            nll -= self.iwae(target, self.config.iwae_k, chunk, rng)?.iter().sum::<f64>();
        }
        Ok(vec![Some(elbo / n), full.then_some(nll / n)])
    }

    fn pictures(&self, held_out: &HeldOut, _rng: &mut Rng) -> Result<Vec<Picture>> {
        let n = held_out.set.n;
        if n < 2 {
            return Ok(vec![]);
        }
        // 32 digits spread over the held-out split (the shipped digits come
        // sorted by class); interpolations run between digits half the split apart.
        let digits = held_out.batches(n).next().ok_or("no held-out images")??.images;
        let pick = |k: usize, offset: usize| -> Result<Tensor> {
            let idx: Vec<i64> = (0..k).map(|i| ((i * n / k + offset) % n) as i64).collect();
            Ok(digits.index_select(0, &Tensor::indices(&idx, &[k], digits.device())?)?)
        };
        let mut out = vec![
            Picture { name: "reconstructions", images: reconstructions(self, &pick(32, 0)?)?, cols: 8 },
            Picture {
                name: "interpolations",
                images: interpolations(self, &pick(8, 0)?, &pick(8, n / 2 + n / 20)?, 10)?,
                cols: 10,
            },
        ];
        if self.config.latent == 2 {
            out.push(Picture { name: "manifold", images: manifold(self, 16)?, cols: 16 });
        }
        Ok(out)
    }

    fn plots() -> &'static [Plot] {
        &[
            Plot {
                name: "elbo",
                title: "Training terms (nats per image)",
                y_label: "nats",
                x: "step",
                series: &["recon", "kl", "loss"],
                log_y: true,
            },
            Plot {
                name: "held_out",
                title: "Held-out ELBO (1,000 digits, nats)",
                y_label: "ELBO",
                x: "step",
                series: &["held_out_elbo"],
                log_y: false,
            },
        ]
    }
}
