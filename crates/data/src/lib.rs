//! kiln-data: image data sets for the models. MNIST in IDX format (plain or
//! gzip; the repository ships 10,000 real digits under data/mnist), and a
//! loader that shuffles with a seed and assembles batches on a background
//! thread so the kernels never wait on I/O. `split` fixes the held-out
//! images (the last 100 of each class) that no model trains on.

pub mod download;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod mnist;
pub mod split;

pub use download::{MNIST_FILES, MNIST_MIRRORS, download_mnist, verify_sha256};
pub use folder::load_image_folder;
pub use idx::{IdxArray, read_idx};
pub use loader::{Batch, Loader, LoaderConfig, scaled_images};
pub use mnist::{ImageSet, load_mnist, shipped_mnist_dir};
pub use split::{HELD_OUT_PER_CLASS, Split, split};

/// Data errors name the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    #[error(transparent)]
    Tensor(#[from] kiln_tensor::Error),
}

pub type Result<T> = std::result::Result<T, DataError>;
