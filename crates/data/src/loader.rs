//! Batches of images scaled to [-1, 1] and resized to the model's size,
//! shuffled with a seed per epoch (so a run can resume at any step and see
//! the same batches), assembled on a background thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use kiln_tensor::Rng;

use crate::ImageSet;

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch: usize,
    pub image_size: usize,
    pub seed: u64,
}

/// One batch: images (batch, c, size, size) as f32 in [-1, 1], row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub epoch: usize,
    pub step: usize,
}

/// A background thread producing batches from global step `start` on.
pub struct Loader {
    rx: Receiver<Batch>,
    pub steps_per_epoch: usize,
}

/// The order of epoch `epoch`: a Fisher–Yates shuffle seeded by (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// Bilinear resize of one channel (align_corners = false, like torch's
/// interpolate without antialiasing), then scaling of bytes to [-1, 1].
fn resize_into(src: &[u8], h: usize, w: usize, size: usize, out: &mut [f32]) {
    let scale = |v: u8| v as f32 / 127.5 - 1.0;
    if h == size && w == size {
        out.iter_mut().zip(src).for_each(|(o, &v)| *o = scale(v));
        return;
    }
    let coord = |o: usize, len: usize| {
        let x = ((o as f32 + 0.5) * len as f32 / size as f32 - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(len - 1);
        (i0, (i0 + 1).min(len - 1), x - i0 as f32)
    };
    for oy in 0..size {
        let (y0, y1, fy) = coord(oy, h);
        for ox in 0..size {
            let (x0, x1, fx) = coord(ox, w);
            let p = |y: usize, x: usize| scale(src[y * w + x]);
            let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
            let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
            out[oy * size + ox] = top * (1.0 - fy) + bottom * fy;
        }
    }
}

/// Images `indices` of `data` as f32 (n, c, size, size) in [-1, 1], resized
/// as the loader resizes them (for held-out evaluation).
pub fn scaled_images(data: &ImageSet, indices: &[usize], size: usize) -> Vec<f32> {
    let (c, plane) = (data.channels, data.height * data.width);
    let mut out = vec![0.0; indices.len() * c * size * size];
    for (k, &i) in indices.iter().enumerate() {
        let img = data.image(i);
        for ch in 0..c {
            let dst = &mut out[(k * c + ch) * size * size..(k * c + ch + 1) * size * size];
            resize_into(&img[ch * plane..(ch + 1) * plane], data.height, data.width, size, dst);
        }
    }
    out
}

fn make_batch(data: &ImageSet, cfg: &LoaderConfig, order: &[usize], epoch: usize, step: usize, within: usize) -> Batch {
    let indices = &order[within * cfg.batch..(within + 1) * cfg.batch];
    let labels = indices.iter().map(|&i| data.labels[i]).collect();
    Batch { images: scaled_images(data, indices, cfg.image_size), labels, epoch, step }
}

impl Loader {
    /// Batches for global steps `start..` (incomplete last batches of an
    /// epoch are dropped, as torch's drop_last).
    pub fn new(data: Arc<ImageSet>, cfg: LoaderConfig, start: usize) -> crate::Result<Loader> {
        if cfg.batch == 0 || cfg.image_size == 0 || data.n < cfg.batch {
            return Err(crate::DataError::Format {
                path: "<loader>".into(),
                msg: format!(
                    "batch {} and image size {} must be positive and the data set ({} images) must hold one batch",
                    cfg.batch, cfg.image_size, data.n
                ),
            });
        }
        let steps_per_epoch = data.n / cfg.batch;
        let (tx, rx): (SyncSender<Batch>, _) = sync_channel(4);
        std::thread::spawn(move || {
            let mut step = start;
            loop {
                let epoch = step / steps_per_epoch;
                let order = epoch_order(data.n, cfg.seed, epoch);
                for within in step % steps_per_epoch..steps_per_epoch {
                    if tx.send(make_batch(&data, &cfg, &order, epoch, step, within)).is_err() {
                        return; // the trainer is gone
                    }
                    step += 1;
                }
            }
        });
        Ok(Loader { rx, steps_per_epoch })
    }

    pub fn next_batch(&self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}
