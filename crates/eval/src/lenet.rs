//! The MNIST classifier kiln measures samples with: LeNet-5 style,
//! conv5(32)-relu-maxpool2, conv5(64)-relu-maxpool2, fc 1024→128-relu
//! (the features FID is computed on), dropout 0.5 in training, fc 128→10.
//! Input (n, 1, 28, 28) in [-1, 1]. Trained by kiln on the shipped digits
//! outside the held-out split, each batch shifted by up to 2 pixels;
//! `assets/lenet.safetensors` holds its weights, the reference feature
//! statistics and its held-out accuracy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_nn::loss::{CrossEntropy, cross_entropy};
use kiln_nn::{Adam, AdamConfig, Conv2d, Dropout, Linear, Module, VarStore, load_checkpoint, save_checkpoint};
use kiln_tensor::{Conv2dParams, DType, Device, Pool2dParams, Rng, Tensor, no_grad};

use crate::fid::FeatureStats;
use crate::{EvalError, Result};

/// The classifier's input side, feature width and classes.
pub const SIDE: usize = 28;
pub const FEATURES: usize = 128;
pub const CLASSES: usize = 10;
/// Images per forward pass when classifying many.
const CHUNK: usize = 500;
/// Training shifts each image by up to this many pixels each way.
const MAX_SHIFT: usize = 2;

/// The classifier's training settings (`train classifier` flags).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Adam learning rate.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = DEFAULT.lr, allow_negative_numbers = true))]
    pub lr: f64,
}

pub const DEFAULT: ClassifierConfig = ClassifierConfig { lr: 1e-3 };

/// The network alone (what evaluation loads).
pub struct LeNet {
    pub store: VarStore,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl LeNet {
    /// torch's default initialisation, seeded.
    pub fn new(device: Device, seed: u64) -> Result<Self> {
        let store = VarStore::new(device, DType::F32, seed);
        let p = store.root();
        let conv = Conv2dParams::default();
        let conv1 = Conv2d::new(&p.sub("conv1"), 1, 32, 5, conv, true)?;
        let conv2 = Conv2d::new(&p.sub("conv2"), 32, 64, 5, conv, true)?;
        let fc1 = Linear::new(&p.sub("fc1"), 64 * 4 * 4, FEATURES, true)?;
        let dropout = Dropout::new(&p.sub("dropout"), 0.5);
        let fc2 = Linear::new(&p.sub("fc2"), FEATURES, CLASSES, true)?;
        Ok(LeNet { store, conv1, conv2, fc1, dropout, fc2 })
    }

    /// (features (n, 128), logits (n, 10)) of images (n, 1, 28, 28) in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_mode(x, false)
    }

    /// `forward`, with dropout when `train`.
    pub fn forward_mode(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let s = x.shape();
        if s.len() != 4 || s[1..] != [1, SIDE, SIDE] {
            return Err(EvalError::Argument {
                op: "lenet",
                msg: format!("expects images (n, 1, {SIDE}, {SIDE}), got {s:?}"),
            });
        }
        let pool = Pool2dParams::new([2, 2]);
        let h = self.conv1.forward(x, false)?.relu()?.max_pool2d(pool)?;
        let h = self.conv2.forward(&h, false)?.relu()?.max_pool2d(pool)?;
        let features = self.fc1.forward(&h.flatten(1, 3)?, false)?.relu()?;
        let logits = self.fc2.forward(&self.dropout.forward(&features, train)?, train)?;
        Ok((features, logits))
    }

    /// Features and class probabilities of `n` 8-bit 28×28 images, in chunks.
    pub fn classify(&self, pixels: &[u8], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        if pixels.len() != n * SIDE * SIDE {
            return Err(EvalError::Argument {
                op: "lenet.classify",
                msg: format!("{} bytes are not {n} images of {SIDE}×{SIDE}", pixels.len()),
            });
        }
        let _g = no_grad();
        let (mut features, mut probs) = (Vec::with_capacity(n * FEATURES), Vec::with_capacity(n * CLASSES));
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            let x = input(&pixels[start * SIDE * SIDE..(start + m) * SIDE * SIDE], m, self.store.device())?;
            let (f, logits) = self.forward(&x)?;
            features.extend(f.to_dtype(DType::F32)?.to_vec::<f32>()?);
            probs.extend(logits.softmax(1)?.to_dtype(DType::F32)?.to_vec::<f32>()?);
        }
        Ok((features, probs))
    }

    /// Accuracy and mean negative log-likelihood (nats) on labelled images
    /// (labels 0–9).
    pub fn accuracy(&self, pixels: &[u8], labels: &[u8]) -> Result<(f64, f64)> {
        check_labels(labels)?;
        let (_, probs) = self.classify(pixels, labels.len())?;
        let (mut right, mut nll) = (0usize, 0.0);
        for (p, &y) in probs.chunks(CLASSES).zip(labels) {
            right += (argmax(p) == y as usize) as usize;
            nll -= (p[y as usize].max(1e-30) as f64).ln();
        }
        let n = labels.len().max(1) as f64;
        Ok((right as f64 / n, nll / n))
    }
}

/// 8-bit images to the network's input in [-1, 1] (as kiln's loader scales).
pub fn input(pixels: &[u8], n: usize, device: Device) -> Result<Tensor> {
    let x: Vec<f32> = pixels.iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
    Ok(Tensor::from_vec(x, &[n, 1, SIDE, SIDE], device)?)
}

/// Refuses labels outside 0–9 (an image folder with more than ten classes).
pub fn check_labels(labels: &[u8]) -> Result<()> {
    match labels.iter().find(|&&l| l as usize >= CLASSES) {
        Some(l) => Err(EvalError::Argument {
            op: "lenet",
            msg: format!("the classifier knows {CLASSES} classes (0–9); the data has label {l}"),
        }),
        None => Ok(()),
    }
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

/// The classifier in training: the network and its optimizer.
pub struct LeNetTrainer {
    pub config: ClassifierConfig,
    pub net: LeNet,
    pub opt: Adam,
}

impl LeNetTrainer {
    pub fn new(config: ClassifierConfig, device: Device, seed: u64) -> Result<Self> {
        let net = LeNet::new(device, seed)?;
        let opt = Adam::new(net.store.trainable(), AdamConfig { lr: config.lr, ..Default::default() })?;
        Ok(LeNetTrainer { config, net, opt })
    }

    /// One Adam step on cross-entropy of the batch, each image shifted by
    /// a draw from `rng`; returns (loss, batch accuracy).
    pub fn train_step(&mut self, images: &Tensor, labels: &[u8], rng: &mut Rng) -> Result<(f64, f64)> {
        check_labels(labels)?;
        let shifted = shift(images, rng)?;
        let (_, logits) = self.net.forward_mode(&shifted, true)?;
        let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let target = Tensor::indices(&ids, &[ids.len()], images.device())?;
        let loss = cross_entropy(&logits, &target, CrossEntropy::default())?;
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        let predicted = logits.detach().argmax(1, false)?.to_vec::<i64>()?;
        let right = predicted.iter().zip(&ids).filter(|(p, y)| p == y).count();
        Ok((loss.to_scalar()?, right as f64 / ids.len().max(1) as f64))
    }
}

/// Each image (n, 1, s, s) moved by (dy, dx) ∈ [−2, 2]², filled with the
/// background value −1: digits a few pixels off-centre, as samples are.
fn shift(images: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    let shape = images.shape().to_vec();
    let s = shape[3];
    let v = images.to_dtype(DType::F32)?.to_vec::<f32>()?;
    let mut out = vec![-1.0f32; v.len()];
    let span = 2 * MAX_SHIFT as u64 + 1;
    for (src, dst) in v.chunks(s * s).zip(out.chunks_mut(s * s)) {
        let (dy, dx) = (rng.below(span) as isize - MAX_SHIFT as isize, rng.below(span) as isize - MAX_SHIFT as isize);
        for y in 0..s as isize {
            let sy = y - dy;
            if !(0..s as isize).contains(&sy) {
                continue;
            }
            for x in 0..s as isize {
                let sx = x - dx;
                if (0..s as isize).contains(&sx) {
                    dst[(y * s as isize + x) as usize] = src[(sy * s as isize + sx) as usize];
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, &shape, images.device())?)
}

/// The shipped classifier file.
pub fn shipped_classifier_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet.safetensors")
}

/// The yardstick: the trained network, the reference statistics of its
/// features, and what its file says of it.
pub struct Classifier {
    pub net: LeNet,
    pub reference: FeatureStats,
    /// Class frequencies of the reference digits.
    pub class_frequencies: Vec<f64>,
    pub held_out_accuracy: f64,
    pub path: PathBuf,
}

const MEAN: &str = "reference.mean";
const COV: &str = "reference.cov";
const FREQ: &str = "reference.class_frequencies";

impl Classifier {
    pub fn shipped(device: Device) -> Result<Self> {
        Self::load(&shipped_classifier_path(), device)
    }

    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let ck = load_checkpoint(path)?;
        let net = LeNet::new(device, 0)?;
        ck.restore(&net.store, "", path)?;
        let bad = |msg: String| EvalError::File { path: path.display().to_string(), msg };
        let get = |k: &str| ck.tensors.get(k).ok_or_else(|| bad(format!("missing tensor {k}")));
        let number =
            |k: &str| -> Result<f64> { ck.meta(k, path)?.parse().map_err(|e| bad(format!("metadata {k}: {e}"))) };
        let reference = FeatureStats::from_parts(
            number("reference.n")? as usize,
            get(MEAN)?.to_vec::<f64>()?,
            get(COV)?.to_vec::<f64>()?,
        )
        .map_err(|e| bad(e.to_string()))?;
        let class_frequencies = get(FREQ)?.to_vec::<f64>()?;
        if class_frequencies.len() != CLASSES {
            return Err(bad(format!("{FREQ} has {} values, not {CLASSES}", class_frequencies.len())));
        }
        Ok(Classifier {
            net,
            reference,
            class_frequencies,
            held_out_accuracy: number("held_out_accuracy")?,
            path: path.to_path_buf(),
        })
    }

    /// Writes the network, the reference statistics and class frequencies,
    /// and the metadata to `path` (atomically).
    pub fn save(&self, path: &Path, note: &str) -> Result<()> {
        let (net, reference) = (&self.net, &self.reference);
        let mut tensors = net.store.named_tensors();
        let d = reference.dim();
        tensors.push((FREQ.into(), Tensor::from_vec(self.class_frequencies.clone(), &[CLASSES], Device::Cpu)?));
        tensors.push((MEAN.into(), Tensor::from_vec(reference.mean.clone(), &[d], Device::Cpu)?));
        tensors.push((COV.into(), Tensor::from_vec(reference.cov.clone(), &[d, d], Device::Cpu)?));
        let metadata = HashMap::from([
            ("reference.n".to_string(), reference.n.to_string()),
            ("held_out_accuracy".to_string(), format!("{}", self.held_out_accuracy)),
            ("note".to_string(), note.to_string()),
        ]);
        save_checkpoint(path, &tensors, &metadata)?;
        Ok(())
    }
}
