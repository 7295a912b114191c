//! kiln-train: one run loop for every model. A model plugs in as a
//! `Recipe` (recipe.rs); `run.rs` is the loop (run folder, progress,
//! metrics, grids, plots, checkpoints, Ctrl-C/SIGTERM, NaN stop, resume);
//! `registry.rs` is the one list of models behind `train|sample <model>`;
//! `evaluate.rs` measures runs and images with kiln-eval's classifier.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod device;
pub mod evaluate;
pub mod images;
pub mod models;
pub mod plot;
pub mod recipe;
pub mod registry;
pub mod run;
pub mod run_dir;
pub mod sample;

pub use recipe::{Batch, HeldOut, Picture, Plot, Recipe, Setup};
pub use run::{Summary, TrainRequest, load_run, train};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;
