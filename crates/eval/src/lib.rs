//! kiln-eval: the yardstick every kiln model is measured with.
//!
//! - `lenet`: a LeNet-5-style MNIST classifier trained by kiln itself
//!   (`cargo xtask train classifier`); its weights and the reference
//!   statistics of its features over the shipped training digits ship in
//!   `assets/lenet.safetensors`.
//! - `fid`: the Fréchet distance between Gaussians fitted to features, in
//!   f64, with the matrix square root by symmetric eigendecomposition.
//! - `score`: classifier score, modes covered, class-histogram KL, mean
//!   confidence and (conditional models) label accuracy.
//! - `pixels`: any images (tensors in [-1, 1], PNG files, PNG grids) to the
//!   classifier's 28×28 8-bit input, the same way for all of them.
//! - `report`: the numbers of one set of images, as eval.json holds them.
//!
//! FIDs from different classifiers are not comparable, and FID depends on
//! the number of samples: kiln reports FID on this classifier at N stated.

pub mod fid;
pub mod lenet;
pub mod pixels;
pub mod report;
pub mod score;

pub use fid::{FeatureStats, frechet_distance, sqrt_psd};
pub use lenet::{Classifier, ClassifierConfig, LeNet, shipped_classifier_path};
pub use report::SampleReport;
pub use score::ClassScores;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Tensor(#[from] kiln_tensor::Error),
    #[error(transparent)]
    Checkpoint(#[from] kiln_nn::CheckpointError),
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{op}: {msg}")]
    Argument { op: &'static str, msg: String },
}

pub type Result<T> = std::result::Result<T, EvalError>;
