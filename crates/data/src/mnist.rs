//! MNIST-style data sets: images as bytes (n, c, h, w) with labels.

use std::path::{Path, PathBuf};

use crate::idx::read_idx;
use crate::{DataError, Result};

/// Images as u8 (n, channels, height, width), with one label per image.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.channels * self.height * self.width;
        &self.images[i * size..(i + 1) * size]
    }
}

/// data/mnist in this repository (10,000 real digits).
pub fn shipped_mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

/// The first of `names` that exists in `dir` (plain or .gz).
fn find(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    for n in names {
        for candidate in [dir.join(n), dir.join(format!("{n}.gz"))] {
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    Err(DataError::Format {
        path: dir.display().to_string(),
        msg: format!("no MNIST file named {}[.gz] here", names.join(" or ")),
    })
}

/// Loads the training images and labels of an MNIST IDX directory.
pub fn load_mnist(dir: &Path) -> Result<ImageSet> {
    let img_path = find(dir, &["train-images-idx3-ubyte", "train-images.idx3-ubyte"])?;
    let lbl_path = find(dir, &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])?;
    let images = read_idx(&img_path)?;
    let labels = read_idx(&lbl_path)?;
    let bad = |p: &Path, msg: String| DataError::Format { path: p.display().to_string(), msg };
    let [n, h, w] = images.dims[..] else {
        return Err(bad(&img_path, format!("images must have 3 dims (n, h, w), got {:?}", images.dims)));
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(bad(&img_path, format!("images have dims {:?}: every dim must be at least 1", images.dims)));
    }
    if labels.dims != [n] {
        return Err(bad(&lbl_path, format!("labels have dims {:?} but the images file has {n} images", labels.dims)));
    }
    Ok(ImageSet { images: images.data, labels: labels.data, n, channels: 1, height: h, width: w })
}
