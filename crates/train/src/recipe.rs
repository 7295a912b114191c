//! The one seam between the run loop and a model. A recipe builds its
//! model from its typed config, runs one training step (stepping its own
//! optimizers), names what a checkpoint holds, and draws samples; the loop
//! (`run.rs`) does everything else the same way for every model.

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

/// A line plot of some of the step's scalars (metrics.csv columns), one
/// PNG per family so scalars of different sizes do not share an axis.
#[derive(Debug, Clone, Copy)]
pub struct Plot {
    /// File stem: `<name>.png` in the run folder.
    pub name: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    pub series: &'static [&'static str],
    /// A log y axis (used only when every value is positive).
    pub log_y: bool,
}

pub trait Recipe: Sized {
    /// The registry name: `train NAME`, `sample NAME`, config.json's "model".
    const NAME: &'static str;
    const DEFAULT_STEPS: usize;
    const DEFAULT_BATCH: usize;
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

    /// The plots the loop draws from metrics.csv at the end of a run.
    fn plots() -> &'static [Plot];

    /// Turns a config.json written by an older kiln into today's layout.
    fn upgrade_config(config: serde_json::Value) -> serde_json::Value {
        config
    }
}
