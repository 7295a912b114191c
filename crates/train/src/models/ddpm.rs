//! `train ddpm` and `sample ddpm`: kiln-diffusion's DDPM as a recipe.
//! Grids and evaluations sample the EMA weights with the config's sampler
//! (DDIM, 20 steps by default); `sample ddpm` may pick another sampler,
//! step count, η or guidance for one command without touching the run.
//! The held-out number is the sampling network's prediction MSE on the
//! held-out digits (one t and ε per digit, from the evaluation's generator).

use std::path::PathBuf;

use kiln_diffusion::{CLASSES, Ddpm, DdpmConfig, SamplerKind, Spacing, Variance};
use kiln_nn::{Adam, VarStore};
use kiln_tensor::{Rng, Tensor};

use crate::Result;
use crate::config::{at_least_one, positive, within};
use crate::device::resolve_device;
use crate::images::write_image_grid;
use crate::recipe::{Batch, HeldOut, Picture, Plot, Recipe, Setup};
use crate::run::load_run;
use crate::sample::{SampleArgs, check_sample_args};

/// Held-out digits per forward pass in `evaluate`.
const EVAL_BATCH: usize = 500;
/// Columns of the denoising strip (x_t along the sampler's steps; the last is x_0).
const STRIP: usize = 8;

/// Sample i asks for class i mod 10.
fn cycling_labels(n: usize) -> Vec<usize> {
    (0..n).map(|i| i % CLASSES).collect()
}

/// `rows` trajectories of the config's sampler, `STRIP` snapshots each
/// (x_t after evenly spaced steps, the last x_0), one trajectory a row.
pub fn denoising_strip(model: &Ddpm, rows: usize, labels: Option<&[usize]>, rng: &mut Rng) -> Result<Tensor> {
    let steps = model.config.plan()?.timesteps.len();
    let k = STRIP.min(steps);
    let record: Vec<usize> = (1..=k).map(|j| (j * steps).div_ceil(k) - 1).collect();
    let (_, snaps) = model.sample_with(rows, labels, rng, &record)?;
    let refs: Vec<&Tensor> = snaps.iter().collect();
    let grid = Tensor::stack(&refs, 1)?;
    let s = grid.shape().to_vec();
    Ok(grid.reshape(&[s[0] * s[1], s[2], s[3], s[4]])?.clamp(-1.0, 1.0)?)
}

impl Recipe for Ddpm {
    const NAME: &'static str = "ddpm";
    /// About 10 minutes on a 2-core CPU with its evaluation (10 min 15 s measured; see README).
    const DEFAULT_STEPS: usize = 2000;
    const DEFAULT_BATCH: usize = 32;
    /// One evaluation (1,000 samples of DDIM-20: about a minute on 2 cores) at the end of the default run.
    const DEFAULT_EVAL_EVERY: usize = Self::DEFAULT_STEPS;
    type Config = DdpmConfig;

    fn check(c: &DdpmConfig) -> Result<()> {
        for (key, v) in
            [("base", c.base), ("timesteps", c.timesteps), ("sample_steps", c.sample_steps), ("groups", c.groups)]
        {
            at_least_one(key, v)?;
        }
        if c.base > 1024 || c.mults.len() > 6 || c.mults.iter().any(|&m| !(1..=16).contains(&m)) || c.res_blocks > 8 {
            return Err("--base at most 1024, --mults 1 to 6 levels of 1 to 16, --res-blocks at most 8".into());
        }
        if !(2..=100_000).contains(&c.timesteps) {
            return Err(format!("--timesteps {}: must be from 2 to 100000", c.timesteps).into());
        }
        if !(8..=256).contains(&c.image_size) {
            return Err(format!("--image-size {}: must be from 8 to 256", c.image_size).into());
        }
        c.unet_shape().check().map_err(|e| format!("--base/--mults/--groups/--image-size/--dropout: {e}"))?;
        c.plan().map_err(|e| format!("--sample-steps {}: {e}", c.sample_steps))?;
        positive("lr", c.lr)?;
        within("clip", c.clip, 0.0, 1e6)?;
        within("ema", c.ema, 0.0, 1.0)?;
        within("p_uncond", c.p_uncond, 0.0, 1.0)?;
        within("guidance", c.guidance, -100.0, 100.0)?;
        within("eta", c.eta, 0.0, 10.0)?;
        Ok(())
    }

    fn image_size(c: &DdpmConfig) -> usize {
        c.image_size
    }

    fn build(c: &DdpmConfig, setup: &Setup) -> Result<Self> {
        Ok(Ddpm::new(DdpmConfig { channels: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn stat_names() -> &'static [&'static str] {
        &["loss", "grad_norm", "lr"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let s = Ddpm::train_step(self, &batch.images, &batch.labels, rng)?;
        Ok(vec![s.loss, s.grad_norm, s.lr])
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("unet", &self.store), ("ema", &self.ema_store)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }

    fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(self.sample_labelled(n, rng)?.0)
    }

    fn sample_labelled(&self, n: usize, rng: &mut Rng) -> Result<(Tensor, Option<Vec<u8>>)> {
        let labels = self.config.conditional.then(|| cycling_labels(n));
        let (x, _) = self.sample_with(n, labels.as_deref(), rng, &[])?;
        Ok((x, labels.map(|l| l.iter().map(|&k| k as u8).collect())))
    }

    fn eval_names() -> &'static [&'static str] {
        &["held_out_loss"]
    }

    fn evaluate(&self, held_out: &HeldOut, rng: &mut Rng, _full: bool) -> Result<Vec<Option<f64>>> {
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in held_out.batches(EVAL_BATCH) {
            let batch = batch?;
            let m = batch.images.shape()[0];
            sum += self.eval_loss(&batch.images, &batch.labels, rng)? * m as f64;
            n += m;
        }
        Ok(vec![(n > 0).then(|| sum / n as f64)])
    }

    fn pictures(&self, _held_out: &HeldOut, rng: &mut Rng) -> Result<Vec<Picture>> {
        let labels = self.config.conditional.then(|| (0..CLASSES).collect::<Vec<_>>());
        let mut out = vec![Picture {
            name: "denoising",
            images: denoising_strip(self, 10, labels.as_deref(), rng)?,
            cols: STRIP,
        }];
        if self.config.conditional {
            let rows: Vec<usize> = (0..CLASSES * CLASSES).map(|i| i / CLASSES).collect();
            out.push(Picture { name: "classes", images: self.sample_with(0, Some(&rows), rng, &[])?.0, cols: CLASSES });
        }
        Ok(out)
    }

    fn plots() -> &'static [Plot] {
        &[
            Plot {
                name: "loss",
                title: "Training loss (prediction MSE)",
                y_label: "MSE",
                x: "step",
                series: &["loss"],
                log_y: true,
            },
            Plot {
                name: "held_out",
                title: "Held-out prediction MSE (EMA weights, 1,000 digits)",
                y_label: "MSE",
                x: "step",
                series: &["held_out_loss"],
                log_y: true,
            },
        ]
    }
}

/// `sample ddpm`: the common sample flags and how to sample this time.
#[derive(Debug, Clone, clap::Args)]
pub struct DdpmSampleArgs {
    #[command(flatten)]
    pub common: SampleArgs,
    /// Sampler [default: the run's].
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerKind>,
    /// DDIM steps S [default: the run's --sample-steps].
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// DDIM's η [default: the run's].
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    #[arg(long, value_enum)]
    pub spacing: Option<Spacing>,
    #[arg(long, value_enum)]
    pub variance: Option<Variance>,
    /// Guidance scale s of a conditional run: ε_u + s (ε_c − ε_u) [default: the run's].
    #[arg(long, allow_negative_numbers = true)]
    pub guidance: Option<f64>,
    /// Conditional runs: every sample of this class (0–9) [default: classes 0–9 in turn].
    #[arg(long, allow_negative_numbers = true)]
    pub label: Option<usize>,
    /// Also write the denoising strip (8 trajectories, x_t along the steps) to this PNG.
    #[arg(long)]
    pub strip: Option<PathBuf>,
}

pub fn sample_ddpm(a: &DdpmSampleArgs) -> Result<String> {
    let c = &a.common;
    check_sample_args(c)?;
    if let Some(p) = &a.strip {
        crate::images::check_png_path(p).map_err(|e| format!("--strip {e}"))?;
    }
    let device = resolve_device(&c.device)?;
    let (mut model, _, step) = load_run::<Ddpm>(&c.checkpoint, device)?;
    let cfg = &mut model.config;
    cfg.sampler = a.sampler.unwrap_or(cfg.sampler);
    cfg.sample_steps = a.steps.unwrap_or(cfg.sample_steps);
    cfg.eta = a.eta.unwrap_or(cfg.eta);
    cfg.spacing = a.spacing.unwrap_or(cfg.spacing);
    cfg.variance = a.variance.unwrap_or(cfg.variance);
    cfg.guidance = a.guidance.unwrap_or(cfg.guidance);
    <Ddpm as Recipe>::check(cfg).map_err(|e| format!("{e} (sampling flags)"))?;
    let labels = match (a.label, cfg.conditional) {
        (Some(k), true) if k < CLASSES => Some(vec![k; c.n]),
        (Some(k), true) => return Err(format!("--label {k}: must be from 0 to {}", CLASSES - 1).into()),
        (Some(_), false) => return Err("--label: the run is not conditional (train with --conditional)".into()),
        (None, true) => Some(cycling_labels(c.n)),
        (None, false) => None,
    };
    let mut rng = Rng::new(c.seed);
    let (images, _) = model.sample_with(c.n, labels.as_deref(), &mut rng, &[])?;
    write_image_grid(&c.out, &images, 8)?;
    if let Some(p) = &a.strip {
        let rows = labels.as_ref().map(|l| l[..8.min(l.len())].to_vec());
        write_image_grid(p, &denoising_strip(&model, 8, rows.as_deref(), &mut rng)?, STRIP)?;
    }
    let how = match model.config.sampler {
        SamplerKind::Ddpm => format!("DDPM ancestral, {} steps", model.config.timesteps),
        SamplerKind::Ddim => format!("DDIM, {} steps, eta {}", model.config.sample_steps, model.config.eta),
    };
    Ok(format!("ddpm: {} samples of step {step} ({how}) in {}", c.n, c.out.display()))
}
