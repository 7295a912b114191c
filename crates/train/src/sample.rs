//! `sample <model>`: a grid of samples from a run's checkpoint.

use std::path::PathBuf;

use kiln_tensor::Rng;

use crate::Result;
use crate::device::resolve_device;
use crate::images::{check_png_path, write_image_grid};
use crate::recipe::Recipe;
use crate::run::load_run;

#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    /// The run folder (holds config.json and checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Number of samples (8 a row).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub n: usize,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// The grid, a .png file.
    #[arg(long, default_value = "grid.png")]
    pub out: PathBuf,
    /// auto | cpu | cuda | cuda:N | wgpu | wgpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Checks --n and --out before any model is loaded, naming the flag.
pub fn check_sample_args(a: &SampleArgs) -> Result<()> {
    if !(1..=4096).contains(&a.n) {
        return Err(format!("--n {}: must be from 1 to 4096", a.n).into());
    }
    check_png_path(&a.out).map_err(|e| format!("--out {e}").into())
}

/// Writes the grid; refuses a checkpoint holding NaN or ±inf.
pub fn sample<R: Recipe>(a: &SampleArgs) -> Result<String> {
    check_sample_args(a)?;
    let device = resolve_device(&a.device)?;
    let (model, _, step) = load_run::<R>(&a.checkpoint, device)?;
    write_image_grid(&a.out, &model.sample(a.n, &mut Rng::new(a.seed))?, 8)?;
    Ok(format!("{}: {} samples of step {step} in {}", R::NAME, a.n, a.out.display()))
}
