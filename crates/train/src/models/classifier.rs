//! `train classifier`: the LeNet that `eval` measures samples with
//! (kiln-eval), trained on the digits outside the held-out split. Its
//! held-out accuracy is its evaluation; `export-classifier` turns a run
//! into the shipped yardstick.

use std::path::Path;

use kiln_data::shipped_mnist_dir;
use kiln_eval::lenet::{ClassifierConfig, FEATURES, LeNetTrainer, SIDE};
use kiln_eval::score::class_frequencies;
use kiln_eval::{Classifier, FeatureStats};
use kiln_nn::{Adam, VarStore};
use kiln_tensor::{Device, Rng, Tensor};

use crate::Result;
use crate::config::positive;
use crate::recipe::{Batch, HeldOut, Plot, Recipe, Setup};
use crate::run::{load_data, load_run};

impl Recipe for LeNetTrainer {
    const NAME: &'static str = "classifier";
    const GENERATES: bool = false;
    /// 20 epochs of the 9,000 training digits.
    const DEFAULT_STEPS: usize = 2800;
    const DEFAULT_BATCH: usize = 64;
    type Config = ClassifierConfig;

    fn check(c: &ClassifierConfig) -> Result<()> {
        positive("lr", c.lr)
    }

    fn image_size(_: &ClassifierConfig) -> usize {
        SIDE
    }

    fn build(c: &ClassifierConfig, setup: &Setup) -> Result<Self> {
        if setup.channels != 1 {
            return Err(format!("--channels {}: the classifier reads grey digits (1 channel)", setup.channels).into());
        }
        Ok(LeNetTrainer::new(c.clone(), setup.device, setup.seed)?)
    }

    fn stat_names() -> &'static [&'static str] {
        &["loss", "accuracy"]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Vec<f64>> {
        let (loss, accuracy) =
            LeNetTrainer::train_step(self, &batch.images, &batch.labels, rng).map_err(|e| format!("--data: {e}"))?;
        Ok(vec![loss, accuracy])
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("net", &self.net.store)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }

    fn sample(&self, _n: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err("the classifier draws no images".into())
    }

    fn eval_names() -> &'static [&'static str] {
        &["held_out_accuracy", "held_out_nll"]
    }

    fn evaluate(&self, held_out: &HeldOut, _rng: &mut Rng, _full: bool) -> Result<Vec<Option<f64>>> {
        if held_out.set.n == 0 {
            return Ok(vec![None, None]);
        }
        let (accuracy, nll) = self.net.accuracy(&held_out_pixels(held_out)?, &held_out.set.labels)?;
        Ok(vec![Some(accuracy), Some(nll)])
    }

    fn plots() -> &'static [Plot] {
        &[
            Plot {
                name: "loss",
                title: "Classifier loss",
                y_label: "cross-entropy",
                x: "step",
                series: &["loss"],
                log_y: true,
            },
            Plot {
                name: "accuracy",
                title: "Training-batch accuracy",
                y_label: "accuracy",
                x: "step",
                series: &["accuracy"],
                log_y: false,
            },
            Plot {
                name: "held_out",
                title: "Held-out accuracy (1,000 digits)",
                y_label: "accuracy",
                x: "step",
                series: &["held_out_accuracy"],
                log_y: false,
            },
        ]
    }
}

/// The held-out digits as the classifier's 8-bit 28×28 input.
pub fn held_out_pixels(held_out: &HeldOut) -> Result<Vec<u8>> {
    let s = &held_out.set;
    if (s.channels, s.height, s.width) != (1, SIDE, SIDE) {
        return Err(format!(
            "the classifier needs 28×28 grey digits, the held-out images are {}×{}×{}",
            s.channels, s.height, s.width
        )
        .into());
    }
    Ok(s.images.clone())
}

/// `export-classifier RUN --out FILE`: the run's network with the
/// reference statistics of its features over the run's training digits
/// and their class frequencies: the file `eval` measures with.
pub fn export_classifier(run: &Path, out: &Path) -> Result<String> {
    let (trainer, file, step) = load_run::<LeNetTrainer>(run, Device::Cpu)?;
    let (train, held_out) = load_data(file.run.data(), SIDE, 1)?.split();
    let held_out = HeldOut { set: held_out, size: SIDE, device: Device::Cpu };
    let net = trainer.net;
    let (features, _) = net.classify(&train.images, train.n)?;
    let reference = FeatureStats::of(&features, train.n, FEATURES)?;
    let (held_out_accuracy, _) = net.accuracy(&held_out_pixels(&held_out)?, &held_out.set.labels)?;
    // The shipped digits are named by their place in the repository, so the file's bytes do not depend on the checkout.
    let shipped = std::fs::canonicalize(shipped_mnist_dir()).ok();
    let data = match std::fs::canonicalize(file.run.data()).ok() == shipped {
        true => "data/mnist".to_string(),
        false => file.run.data().display().to_string(),
    };
    let note = format!(
        "kiln LeNet: `cargo xtask train classifier --seed {}` ({step} steps, batch {}) on {} training digits of {}, \
         exported by `cargo xtask export-classifier`; reference statistics over those {} digits",
        file.run.seed,
        file.run.batch(),
        train.n,
        data,
        train.n
    );
    let classifier = Classifier {
        net,
        reference,
        class_frequencies: class_frequencies(&train.labels),
        held_out_accuracy,
        path: out.to_path_buf(),
    };
    classifier.save(out, &note)?;
    Ok(format!(
        "classifier of {} (step {step}): held-out accuracy {:.4} on {} digits; reference statistics of {} digits; written to {}",
        run.display(),
        held_out_accuracy,
        held_out.set.n,
        train.n,
        out.display()
    ))
}
