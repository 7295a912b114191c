//! The one seam between the run loop and a model. A recipe builds its
//! model from its typed config, runs one training step (stepping its own
//! optimizers), names what a checkpoint holds, and draws samples; the loop
//! (`run.rs`) does everything else the same way for every model.

use kiln_data::{ImageSet, scaled_images};
use kiln_nn::{Adam, VarStore};
use kiln_tensor::{Device, Rng, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;

/// What the loop knows when it builds a model.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub device: Device,
    /// Image channels of the data (1 for MNIST).
    pub channels: usize,
    /// The run's seed (weights; the loop seeds its own generator with it too).
    pub seed: u64,
}

/// One batch on the model's device.
pub struct Batch {
    /// Images (batch, channels, size, size) in [-1, 1].
    pub images: Tensor,
    /// The class of each image (0–9 on MNIST; 0 for an image folder).
    pub labels: Vec<u8>,
}

/// The held-out split of the run's data (`kiln_data::split`), which no
/// model trains on: likelihoods and accuracies are measured on it.
pub struct HeldOut {
    /// The held-out images, 8-bit at the data's own size.
    pub set: ImageSet,
    /// The model's image side (`Recipe::image_size`) and device.
    pub size: usize,
    pub device: Device,
}

impl HeldOut {
    /// The held-out images in batches of `batch` (the last may be smaller),
    /// resized and scaled to [-1, 1] as training batches are.
    pub fn batches(&self, batch: usize) -> impl Iterator<Item = Result<Batch>> + '_ {
        let all: Vec<usize> = (0..self.set.n).collect();
        let c = self.set.channels;
        all.chunks(batch.max(1))
            .map(|idx| {
                let x = scaled_images(&self.set, idx, self.size);
                let images = Tensor::from_vec(x, &[idx.len(), c, self.size, self.size], self.device)?;
                Ok(Batch { images, labels: idx.iter().map(|&i| self.set.labels[i]).collect() })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// A picture the loop writes at the end of a run, `samples/<name>.png`.
pub struct Picture {
    pub name: &'static str,
    /// (n, channels, size, size) in [-1, 1].
    pub images: Tensor,
    /// Images a row.
    pub cols: usize,
}

/// A line plot of some of the step's scalars (metrics.csv columns), one
/// PNG per family so scalars of different sizes do not share an axis.
#[derive(Debug, Clone, Copy)]
pub struct Plot {
    /// File stem: `<name>.png` in the run folder.
    pub name: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    /// The metrics.csv column on the x axis: "step" or "seconds" (wall time).
    pub x: &'static str,
    pub series: &'static [&'static str],
    /// A log y axis (used only when every value is positive).
    pub log_y: bool,
}

pub trait Recipe: Sized {
    /// The registry name: `train NAME`, `sample NAME`, config.json's "model".
    const NAME: &'static str;
    /// False for a model that draws no images (the classifier): the loop
    /// writes no grids and measures no FID for it.
    const GENERATES: bool = true;
    const DEFAULT_STEPS: usize;
    const DEFAULT_BATCH: usize;
    /// `--eval-every` when not given (a run also evaluates at its end whenever this is above 0).
    const DEFAULT_EVAL_EVERY: usize = 500;
    /// The model's config: its flags, config.json's "config", and `build`'s argument.
    type Config: Serialize + DeserializeOwned + Clone + std::fmt::Debug;

    /// Checks every value of the config, naming its flag (`--ngf 0: ...`).
    fn check(config: &Self::Config) -> Result<()>;

    /// The side the loader resizes images to.
    fn image_size(config: &Self::Config) -> usize;

    fn build(config: &Self::Config, setup: &Setup) -> Result<Self>;

    /// Names of the scalars `train_step` returns, in order: metrics.csv's columns.
    fn stat_names() -> &'static [&'static str];

    /// One training step. Everything random it draws (noise, timesteps,
    /// dequantisation) comes from `rng`, which the checkpoint saves; layers
    /// that draw (dropout) use their store's generator, also saved.
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>>;

    /// The named parameter stores a checkpoint holds (names prefix their tensors).
    fn stores(&self) -> Vec<(&'static str, &VarStore)>;

    /// The named optimizers a checkpoint holds.
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)>;

    /// `n` images (n, channels, size, size) in [-1, 1], in evaluation mode,
    /// drawn from `rng` only; cheap enough for a grid every few hundred steps.
    fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor>;

    /// Conditional models: samples with the class each was asked to be.
    fn sample_labelled(&self, n: usize, rng: &mut Rng) -> Result<(Tensor, Option<Vec<u8>>)> {
        Ok((self.sample(n, rng)?, None))
    }

    /// Names of the numbers `evaluate` returns (metrics.csv columns, eval.json keys).
    fn eval_names() -> &'static [&'static str] {
        &[]
    }

    /// The model's own numbers on the held-out split (bits/dim for flows,
    /// ELBO and IWAE NLL for VAEs, accuracy for the classifier), in
    /// evaluation mode; anything random comes from `rng`. `full` is false
    /// for the evaluations during training, which may leave the costly
    /// numbers out (None); `eval` and the end of a run ask for all.
    fn evaluate(&self, _held_out: &HeldOut, _rng: &mut Rng, _full: bool) -> Result<Vec<Option<f64>>> {
        Ok(vec![])
    }

    /// Pictures beside the sample grid, written at the end of a run
    /// (reconstructions, interpolations, ...), drawn from `rng` only.
    fn pictures(&self, _held_out: &HeldOut, _rng: &mut Rng) -> Result<Vec<Picture>> {
        Ok(vec![])
    }

    /// The plots the loop draws from metrics.csv at the end of a run.
    fn plots() -> &'static [Plot];

    /// Turns a config.json written by an older kiln into today's layout.
    fn upgrade_config(config: serde_json::Value) -> serde_json::Value {
        config
    }
}
