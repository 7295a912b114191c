//! `train cgan`: kiln-gan's conditional GAN as a recipe. Its flags are the
//! DCGAN's (losses and penalties included); samples are asked for classes
//! 0–9 in turn, `samples/classes.png` has one row per class from the
//! same ten noise vectors, and `samples/interpolation.png` one row per
//! class along the same line in z.

use kiln_gan::cgan::CLASSES;
use kiln_gan::{Cgan, DcganConfig};
use kiln_nn::{Adam, VarStore};
use kiln_tensor::{Rng, Tensor};

use crate::Result;
use crate::device::resolve_device;
use crate::images::write_image_grid;
use crate::models::dcgan::{check_gan, interpolation_weights};
use crate::recipe::{Batch, HeldOut, Picture, Plot, Recipe, Setup};
use crate::run::load_run;
use crate::sample::{SampleArgs, check_sample_args};

/// Sample i asks for class i mod 10.
fn cycling_labels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % CLASSES) as u8).collect()
}

/// Ten noise vectors from `rng`, each repeated down a column of the ten
/// class rows: row r is class r (100 images, 10 a row).
pub fn class_grid(model: &Cgan, rng: &mut Rng) -> Result<Tensor> {
    let noise = model.noise(CLASSES, rng)?;
    let rows: Vec<&Tensor> = (0..CLASSES).map(|_| &noise).collect();
    let labels: Vec<u8> = (0..CLASSES * CLASSES).map(|i| (i / CLASSES) as u8).collect();
    Ok(model.sample(&Tensor::cat(&rows, 0)?, &labels)?)
}

/// Interpolation in z at a fixed label: row r is class r along the same
/// line from one noise vector to another, z = (1 − t)·z₀ + t·z₁ in ten
/// steps, so a row that changes only in style shows G keeps the class.
pub fn interpolation_grid(model: &Cgan, rng: &mut Rng) -> Result<Tensor> {
    let ends = model.noise(2, rng)?;
    let (z0, z1) = (ends.narrow(0, 0, 1)?, ends.narrow(0, 1, 1)?);
    let line = (0..CLASSES)
        .map(|i| {
            let t = i as f64 / (CLASSES - 1) as f64;
            z0.mul_scalar(1.0 - t)?.add(&z1.mul_scalar(t)?)
        })
        .collect::<kiln_tensor::Result<Vec<Tensor>>>()?;
    let row = Tensor::cat(&line.iter().collect::<Vec<_>>(), 0)?;
    let rows: Vec<&Tensor> = (0..CLASSES).map(|_| &row).collect();
    let labels: Vec<u8> = (0..CLASSES * CLASSES).map(|i| (i / CLASSES) as u8).collect();
    Ok(model.sample(&Tensor::cat(&rows, 0)?, &labels)?)
}

impl Recipe for Cgan {
    const NAME: &'static str = "cgan";
    /// About 10 minutes on a 2-core CPU (see README).
    const DEFAULT_STEPS: usize = 3000;
    const DEFAULT_BATCH: usize = 64;
    type Config = DcganConfig;

    fn check(c: &DcganConfig) -> Result<()> {
        check_gan(c)
    }

    fn image_size(c: &DcganConfig) -> usize {
        c.image_size
    }

    fn build(c: &DcganConfig, setup: &Setup) -> Result<Self> {
        Ok(Cgan::new(DcganConfig { nc: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn stat_names() -> &'static [&'static str] {
        &["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let n = batch.images.shape()[0];
        let noise = self.noise(n, rng)?;
        let alpha = interpolation_weights(&self.config, &batch.images, rng)?;
        let s = Cgan::step(self, &batch.images, &batch.labels, &noise, alpha.as_ref())
            .map_err(|e| format!("--data: {e}"))?;
        Ok(vec![s.loss_d, s.loss_g, s.d_x, s.d_g_z1, s.d_g_z2])
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        let mut stores = vec![("g", &self.g_store), ("d", &self.d_store)];
        stores.extend(self.ema.as_ref().map(|e| ("g_ema", &e.store)));
        stores
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt_g", &mut self.opt_g), ("opt_d", &mut self.opt_d)]
    }

    fn sample(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(self.sample_labelled(n, rng)?.0)
    }

    fn sample_labelled(&self, n: usize, rng: &mut Rng) -> Result<(Tensor, Option<Vec<u8>>)> {
        let labels = cycling_labels(n);
        let images = Cgan::sample(self, &self.noise(n, rng)?, &labels)?;
        Ok((images, Some(labels)))
    }

    fn pictures(&self, _held_out: &HeldOut, rng: &mut Rng) -> Result<Vec<Picture>> {
        Ok(vec![
            Picture { name: "classes", images: class_grid(self, rng)?, cols: CLASSES },
            Picture { name: "interpolation", images: interpolation_grid(self, rng)?, cols: CLASSES },
        ])
    }

    fn plots() -> &'static [Plot] {
        <kiln_gan::Dcgan as Recipe>::plots()
    }
}

/// `sample cgan`: the common sample flags and the class to draw.
#[derive(Debug, Clone, clap::Args)]
pub struct CganSampleArgs {
    #[command(flatten)]
    pub common: SampleArgs,
    /// Every sample of this class (0–9) [default: classes 0–9 in turn].
    #[arg(long, allow_negative_numbers = true)]
    pub label: Option<u8>,
}

pub fn sample_cgan(a: &CganSampleArgs) -> Result<String> {
    let c = &a.common;
    check_sample_args(c)?;
    let labels = match a.label {
        Some(k) if (k as usize) < CLASSES => vec![k; c.n],
        Some(k) => return Err(format!("--label {k}: must be from 0 to {}", CLASSES - 1).into()),
        None => cycling_labels(c.n),
    };
    let (model, _, step) = load_run::<Cgan>(&c.checkpoint, resolve_device(&c.device)?)?;
    let images = Cgan::sample(&model, &model.noise(c.n, &mut Rng::new(c.seed))?, &labels)?;
    write_image_grid(&c.out, &images, 8)?;
    let which = a.label.map_or("classes 0-9 in turn".to_string(), |k| format!("class {k}"));
    Ok(format!("cgan: {} samples of step {step} ({which}) in {}", c.n, c.out.display()))
}
