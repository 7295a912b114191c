//! `train dcgan`: kiln-gan's DCGAN as a recipe. Its config is
//! `kiln_gan::DcganConfig` itself (flags, config.json and constructor).

use kiln_gan::{Dcgan, DcganConfig, GanLoss};
use kiln_nn::{Adam, VarStore};
use kiln_tensor::{DType, Rng, Tensor};
use serde_json::{Value, json};

use crate::Result;
use crate::config::{at_least_one, flag, positive, within};
use crate::recipe::{Batch, Plot, Recipe, Setup};

impl Recipe for Dcgan {
    const NAME: &'static str = "dcgan";
    /// About 10 minutes on a 2-core CPU (see README).
    const DEFAULT_STEPS: usize = 3000;
    const DEFAULT_BATCH: usize = 64;
    type Config = DcganConfig;

    fn check(c: &DcganConfig) -> Result<()> {
        if c.conditional_bn {
            return Err("--conditional-bn: the DCGAN has no classes (it is a `train cgan` flag)".into());
        }
        check_gan(c)
    }

    fn image_size(c: &DcganConfig) -> usize {
        c.image_size
    }

    fn build(c: &DcganConfig, setup: &Setup) -> Result<Self> {
        Ok(Dcgan::new(DcganConfig { nc: setup.channels, ..c.clone() }, setup.device, setup.seed)?)
    }

    fn stat_names() -> &'static [&'static str] {
        &["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let n = batch.images.shape()[0];
        let noise = self.noise(n, rng)?;
        let alpha = interpolation_weights(&self.config, &batch.images, rng)?;
        let s = Dcgan::step(self, &batch.images, &noise, alpha.as_ref())?;
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
        let noise = self.noise(n, rng)?;
        Ok(Dcgan::sample(self, &noise)?)
    }

    fn plots() -> &'static [Plot] {
        &[
            Plot {
                name: "loss",
                title: "DCGAN losses",
                y_label: "loss",
                x: "step",
                series: &["loss_d", "loss_g"],
                log_y: true,
            },
            Plot {
                name: "d_output",
                title: "Mean D outputs (probabilities for bce, raw scores otherwise)",
                y_label: "mean D(.)",
                x: "step",
                series: &["d_x", "d_g_z1", "d_g_z2"],
                log_y: false,
            },
        ]
    }

    /// config.json before the shared loop was one flat object.
    fn upgrade_config(v: Value) -> Value {
        if v.get("run").is_some() {
            return v;
        }
        let take = |keys: &[(&str, &str)]| -> Value {
            keys.iter().filter_map(|(new, old)| v.get(*old).map(|x| (new.to_string(), x.clone()))).collect()
        };
        json!({
            "model": v.get("model").cloned().unwrap_or(Value::Null),
            "run": take(&[("data", "data"), ("channels", "nc"), ("steps", "steps"), ("batch", "batch"), ("seed", "seed"),
                ("sample_every", "sample_every"), ("checkpoint_every", "checkpoint_every")]),
            "config": take(&[("nz", "nz"), ("ngf", "ngf"), ("ndf", "ndf"), ("image_size", "image_size"), ("lr", "lr"),
                ("beta1", "beta1"), ("real_label", "real_label")]),
        })
    }
}

/// WGAN-GP's interpolation weights for a batch of `images`: one per image,
/// drawn from `rng` (after the noise); None for the other losses.
pub fn interpolation_weights(c: &DcganConfig, images: &Tensor, rng: &mut Rng) -> Result<Option<Tensor>> {
    Ok(match c.loss {
        GanLoss::WganGp => Some(Tensor::rand(&[images.shape()[0], 1, 1, 1], DType::F32, images.device(), rng)?),
        _ => None,
    })
}

/// The GAN config's checks, each naming its flag (DCGAN and CGAN share them).
pub fn check_gan(c: &DcganConfig) -> Result<()> {
    at_least_one("nz", c.nz)?;
    at_least_one("ngf", c.ngf)?;
    at_least_one("ndf", c.ndf)?;
    // Widths past 4096 would ask for tens of GB before any check could.
    for (key, v) in [("nz", c.nz), ("ngf", c.ngf), ("ndf", c.ndf)] {
        if v > 4096 {
            return Err(format!("{} {v}: at most 4096", flag(key)).into());
        }
    }
    if !(16..=256).contains(&c.image_size) || !c.image_size.is_power_of_two() {
        return Err(format!("--image-size {}: must be 16, 32, 64, 128 or 256", c.image_size).into());
    }
    positive("lr", c.lr)?;
    within("lr_d", c.lr_d, 0.0, 1e6)?;
    within("lr_g", c.lr_g, 0.0, 1e6)?;
    within("ema", c.ema, 0.0, 0.999_999_9)?;
    let hidden = c.image_size / 2;
    if c.self_attention != 0 && !(c.self_attention.is_power_of_two() && (4..=hidden).contains(&c.self_attention)) {
        return Err(format!(
            "--self-attention {}: 0 (off) or a hidden side of G and D, a power of two from 4 to {hidden}",
            c.self_attention
        )
        .into());
    }
    within("beta1", c.beta1, 0.0, 0.999_999)?;
    within("beta2", c.beta2, 0.0, 0.999_999)?;
    within("real_label", c.real_label, 0.0, 1.0)?;
    if c.real_label != 1.0 && c.loss != GanLoss::Bce {
        return Err(format!("--real-label {}: label smoothing applies to --loss bce only", c.real_label).into());
    }
    if c.n_critic > 100 {
        return Err(format!("--n-critic {}: at most 100", c.n_critic).into());
    }
    within("gp_lambda", c.gp_lambda, 0.0, 1e6)?;
    within("r1", c.r1, 0.0, 1e6)
}
