//! `train glow` / `train realnvp` and `sample glow|realnvp`: kiln-flow's
//! two flows as recipes that share everything but their configs. The loss
//! and the held-out number are bits/dim of the dequantised 8-bit digits
//! (the dequantisation noise from the step's or the evaluation's generator).

use kiln_flow::{Flow, Glow, GlowConfig, RealNvp, RealNvpConfig};
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

/// The part of a recipe that differs between the two flows; everything
/// else is the one `Recipe` implementation below.
pub trait FlowRecipe: Sized {
    const NAME: &'static str;
    const DEFAULT_STEPS: usize;
    /// The checkpoint's name for the model's store.
    const STORE: &'static str;
    type Config: serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug;
    fn check(config: &Self::Config) -> Result<()>;
    fn image_size(config: &Self::Config) -> usize;
    fn build(config: &Self::Config, setup: &Setup) -> Result<Self>;
    fn flow(&self) -> &Flow;
    fn flow_mut(&mut self) -> &mut Flow;
    /// The temperature of grids and FID samples (`--temperature`).
    fn temperature(&self) -> f64;
    fn set_temperature(&mut self, t: f64);
}

impl FlowRecipe for Glow {
    const NAME: &'static str = "glow";
    /// About 10 minutes on a 2-core CPU with its evaluations (see README).
    const DEFAULT_STEPS: usize = 2400;
    const STORE: &'static str = "glow";
    type Config = GlowConfig;

    fn check(c: &GlowConfig) -> Result<()> {
        for (key, v) in [("levels", c.levels), ("depth", c.depth), ("hidden", c.hidden)] {
            at_least_one(key, v)?;
        }
        if c.levels > 4 || c.depth > 64 || c.hidden > 1024 {
            return Err("--levels at most 4, --depth at most 64, --hidden at most 1024".into());
        }
        if !(4..=256).contains(&c.image_size) || !c.image_size.is_multiple_of(1 << c.levels) {
            return Err(
                format!("--image-size {}: must be from 4 to 256 and divisible by 2^levels", c.image_size).into()
            );
        }
        check_training(c.lr, c.clip, c.temperature)
    }

    fn image_size(c: &GlowConfig) -> usize {
        c.image_size
    }

    fn build(c: &GlowConfig, setup: &Setup) -> Result<Self> {
        Ok(Glow::new(GlowConfig { channels: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }
    fn flow_mut(&mut self) -> &mut Flow {
        &mut self.flow
    }
    fn temperature(&self) -> f64 {
        self.config.temperature
    }
    fn set_temperature(&mut self, t: f64) {
        self.config.temperature = t;
    }
}

impl FlowRecipe for RealNvp {
    const NAME: &'static str = "realnvp";
    /// About 10 minutes on a 2-core CPU with its evaluations (see README).
    const DEFAULT_STEPS: usize = 1250;
    const STORE: &'static str = "realnvp";
    type Config = RealNvpConfig;

    fn check(c: &RealNvpConfig) -> Result<()> {
        at_least_one("hidden", c.hidden)?;
        if c.hidden > 1024 || c.blocks > 16 {
            return Err("--hidden at most 1024, --blocks at most 16".into());
        }
        if !(4..=256).contains(&c.image_size) || !c.image_size.is_multiple_of(2) {
            return Err(format!("--image-size {}: must be even, from 4 to 256", c.image_size).into());
        }
        within("alpha", c.alpha, 0.0, 0.49)?;
        check_training(c.lr, c.clip, c.temperature)
    }

    fn image_size(c: &RealNvpConfig) -> usize {
        c.image_size
    }

    fn build(c: &RealNvpConfig, setup: &Setup) -> Result<Self> {
        Ok(RealNvp::new(RealNvpConfig { channels: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }
    fn flow_mut(&mut self) -> &mut Flow {
        &mut self.flow
    }
    fn temperature(&self) -> f64 {
        self.config.temperature
    }
    fn set_temperature(&mut self, t: f64) {
        self.config.temperature = t;
    }
}

fn check_training(lr: f64, clip: f64, temperature: f64) -> Result<()> {
    positive("lr", lr)?;
    within("clip", clip, 0.0, 1e6)?;
    within("temperature", temperature, 0.0, 10.0)
}

/// Mean held-out bits/dim.
fn evaluate(flow: &Flow, held_out: &HeldOut, rng: &mut Rng) -> Result<Vec<Option<f64>>> {
    let (mut sum, mut n) = (0.0, 0usize);
    for batch in held_out.batches(EVAL_BATCH) {
        let bpd = flow.eval_bits_per_dim(&batch?.images, rng)?;
        sum += bpd.iter().sum::<f64>();
        n += bpd.len();
    }
    Ok(vec![(n > 0).then(|| sum / n as f64)])
}

/// A grid per temperature, and held-out digits above their f⁻¹(f(x)).
fn pictures(flow: &Flow, held_out: &HeldOut, rng: &mut Rng) -> Result<Vec<Picture>> {
    let mut out = vec![];
    for (name, t) in [("temperature_0.5", 0.5), ("temperature_0.7", 0.7), ("temperature_1.0", 1.0)] {
        out.push(Picture { name, images: flow.sample(64, t, rng)?, cols: 8 });
    }
    let n = held_out.set.n;
    if n >= 1 {
        let digits = held_out.batches(n).next().ok_or("no held-out images")??.images;
        let idx: Vec<i64> = (0..16).map(|i| (i * n / 16) as i64).collect();
        let x = digits.index_select(0, &Tensor::indices(&idx, &[16], digits.device())?)?;
        let r = flow.reconstruct(&x, rng)?;
        // Rows of 8 originals, each followed by the row of their reconstructions.
        let rows: Vec<Tensor> = (0..2)
            .flat_map(|k| [x.narrow(0, 8 * k, 8), r.narrow(0, 8 * k, 8)])
            .collect::<std::result::Result<_, _>>()?;
        out.push(Picture {
            name: "reconstructions",
            images: Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)?,
            cols: 8,
        });
    }
    Ok(out)
}

const PLOTS: &[Plot] = &[
    Plot { name: "bpd", title: "Training bits/dim", y_label: "bits/dim", x: "step", series: &["bpd"], log_y: true },
    Plot {
        name: "held_out",
        title: "Held-out bits/dim (1,000 digits)",
        y_label: "bits/dim",
        x: "step",
        series: &["held_out_bpd"],
        log_y: false,
    },
];

impl<M: FlowRecipe> Recipe for M {
    const NAME: &'static str = M::NAME;
    const DEFAULT_STEPS: usize = M::DEFAULT_STEPS;
    const DEFAULT_BATCH: usize = 64;
    type Config = M::Config;

    fn check(c: &M::Config) -> Result<()> {
        M::check(c)
    }

    fn image_size(c: &M::Config) -> usize {
        M::image_size(c)
    }

    fn build(c: &M::Config, setup: &Setup) -> Result<Self> {
        M::build(c, setup)
    }

    fn stat_names() -> &'static [&'static str] {
        &["bpd", "grad_norm", "lr"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let s = self.flow_mut().train_step(&batch.images, rng)?;
        Ok(vec![s.bpd, s.grad_norm, s.lr])
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![(M::STORE, &self.flow().store)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.flow_mut().opt)]
    }

    fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(self.flow().sample(n, self.temperature(), rng)?)
    }

    fn eval_names() -> &'static [&'static str] {
        &["held_out_bpd"]
    }

    fn evaluate(&self, held_out: &HeldOut, rng: &mut Rng, _full: bool) -> Result<Vec<Option<f64>>> {
        evaluate(self.flow(), held_out, rng)
    }

    fn pictures(&self, held_out: &HeldOut, rng: &mut Rng) -> Result<Vec<Picture>> {
        pictures(self.flow(), held_out, rng)
    }

    fn plots() -> &'static [Plot] {
        PLOTS
    }
}

/// `sample glow|realnvp`: the common sample flags and a temperature.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowSampleArgs {
    #[command(flatten)]
    pub common: SampleArgs,
    /// z ~ N(μ, (T σ)²) [default: the run's --temperature].
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
}

pub fn sample_flow<R: FlowRecipe + Recipe>(a: &FlowSampleArgs) -> Result<String> {
    let c = &a.common;
    check_sample_args(c)?;
    if let Some(t) = a.temperature {
        within("temperature", t, 0.0, 10.0)?;
    }
    let (mut model, _, step) = load_run::<R>(&c.checkpoint, resolve_device(&c.device)?)?;
    let t = a.temperature.unwrap_or(model.temperature());
    model.set_temperature(t);
    write_image_grid(&c.out, &model.sample(c.n, &mut Rng::new(c.seed))?, 8)?;
    Ok(format!("{}: {} samples of step {step} at temperature {t} in {}", <R as FlowRecipe>::NAME, c.n, c.out.display()))
}
