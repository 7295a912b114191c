//! `eval`: kiln's numbers for a run: FID on the shipped classifier's
//! features, classifier score and modes of N samples drawn through the
//! model's own sampler, and the model's own numbers on the held-out split;
//! or the same yardstick for any PNGs. The run loop's `--eval-every` uses
//! the same functions, so the curve in metrics.csv and `eval` agree.

use std::path::{Path, PathBuf};

use kiln_data::ImageSet;
use kiln_eval::lenet::SIDE;
use kiln_eval::pixels::{from_png_folder, from_png_grid, from_tensor};
use kiln_eval::{Classifier, SampleReport};
use kiln_tensor::{Device, Rng};
use serde_json::{Map, Value, json};

use crate::Result;
use crate::config::ConfigFile;
use crate::device::resolve_device;
use crate::recipe::{HeldOut, Recipe};
use crate::run::{load_data, load_run};
use crate::run_dir::write_atomic;

/// The sample columns of metrics.csv for a model that generates.
pub const SAMPLE_COLUMNS: [&str; 3] = ["fid", "classifier_score", "modes"];
/// Samples are drawn from `Rng::new(seed ^ EVAL_SEED)`, `seed` 0 in training.
const EVAL_SEED: u64 = 0xE7A1_5EED;
/// Samples per call of the model's sampler.
const CHUNK: usize = 250;

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The run folder to evaluate (its checkpoint); eval.json is written there.
    #[arg(required_unless_present = "images", conflicts_with = "images")]
    pub run: Option<PathBuf>,
    /// Score these images instead: a folder of PNGs, or one PNG grid.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Samples to draw (FID depends on it: compare only at equal N) [default: the run's --eval-n, 1000]. With --images: the first N tiles.
    #[arg(long, allow_negative_numbers = true)]
    pub n: Option<usize>,
    /// Seeds the samples.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Tiles a row of a PNG grid (torchvision's save_image and kiln write 8).
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    pub nrow: usize,
    /// Pixels around each tile of a PNG grid (torchvision and kiln write 2).
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub padding: usize,
    /// Also write the numbers of --images as JSON to this file (a run's go to RUN/eval.json).
    #[arg(long, requires = "images")]
    pub json: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N | wgpu | wgpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The samples' numbers (generators) and the held-out numbers of one evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub samples: Option<SampleReport>,
    /// None: not computed in this (quick) evaluation.
    pub held_out: Vec<(&'static str, Option<f64>)>,
}

impl Evaluation {
    /// Values in the order of `eval_columns::<R>()`.
    pub fn columns(&self) -> Vec<Option<f64>> {
        let mut v = vec![];
        if let Some(s) = &self.samples {
            v.extend([s.fid, s.scores.classifier_score, s.scores.modes as f64].map(Some));
        }
        v.extend(self.held_out.iter().map(|(_, x)| *x));
        v
    }

    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self.samples.iter().map(SampleReport::line).collect();
        parts.extend(self.held_out.iter().filter_map(|(k, v)| v.map(|v| format!("{k} {v:.4}"))));
        parts.join(", ")
    }
}

/// metrics.csv's evaluation columns for `R`.
pub fn eval_columns<R: Recipe>() -> Vec<&'static str> {
    let samples: &[&str] = if R::GENERATES { &SAMPLE_COLUMNS } else { &[] };
    samples.iter().chain(R::eval_names()).copied().collect()
}

/// Draws `n` samples (in chunks, from one generator seeded by `seed`) and scores them.
pub fn score_samples<R: Recipe>(model: &R, classifier: &Classifier, n: usize, seed: u64) -> Result<SampleReport> {
    let mut rng = Rng::new(seed ^ EVAL_SEED);
    let (mut pixels, mut labels, mut conditional) = (vec![], vec![], false);
    for start in (0..n).step_by(CHUNK) {
        let (images, asked) = model.sample_labelled(CHUNK.min(n - start), &mut rng)?;
        pixels.extend(from_tensor(&images)?);
        conditional = asked.is_some();
        labels.extend(asked.unwrap_or_default());
    }
    Ok(classifier.score(&pixels, n, conditional.then_some(&labels[..]))?)
}

/// One evaluation of `model`: its samples against `classifier` (when it
/// generates) and its own numbers on `held_out` (all of them when `full`).
pub fn evaluate<R: Recipe>(
    model: &R,
    classifier: Option<&Classifier>,
    held_out: &HeldOut,
    n: usize,
    seed: u64,
    full: bool,
) -> Result<Evaluation> {
    let samples = match (R::GENERATES, classifier) {
        (true, Some(c)) => Some(score_samples(model, c, n, seed)?),
        _ => None,
    };
    Ok(Evaluation { samples, held_out: held_out_numbers(model, held_out, seed, full)? })
}

/// The recipe's own numbers on `held_out`, named (all of them when `full`).
pub fn held_out_numbers<R: Recipe>(
    model: &R,
    held_out: &HeldOut,
    seed: u64,
    full: bool,
) -> Result<Vec<(&'static str, Option<f64>)>> {
    let values = model.evaluate(held_out, &mut Rng::new(seed ^ EVAL_SEED ^ 1), full)?;
    if values.len() != R::eval_names().len() {
        return Err(
            format!("{}: evaluate gave {} numbers for {} names", R::NAME, values.len(), R::eval_names().len()).into()
        );
    }
    Ok(R::eval_names().iter().copied().zip(values).collect())
}

/// A full evaluation `e` of an `R` at `step` (samples drawn with `seed`),
/// written to `dir/eval.json`.
pub fn write_eval_json<R: Recipe>(
    dir: &Path,
    e: &Evaluation,
    classifier: Option<&Classifier>,
    held_out: &HeldOut,
    seed: u64,
    step: usize,
) -> Result<PathBuf> {
    let mut report = Map::new();
    report.insert("model".into(), json!(R::NAME));
    report.insert("step".into(), json!(step));
    report.insert("seed".into(), json!(seed));
    if let (Some(c), Some(s)) = (classifier, &e.samples) {
        report.insert("classifier".into(), classifier_json(c));
        report.insert("samples".into(), serde_json::to_value(s)?);
    }
    if !e.held_out.is_empty() {
        let held: Map<String, Value> = e.held_out.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        report.insert("held_out".into(), json!({ "n": held_out.set.n, "metrics": held }));
    }
    let path = dir.join("eval.json");
    write_atomic(&path, serde_json::to_string_pretty(&Value::Object(report))?.as_bytes())?;
    Ok(path)
}

/// The held-out split of a run's data at the model's image size; an empty
/// one for a model with no held-out numbers (its data is not read).
fn held_out_of<R: Recipe>(file: &ConfigFile<R::Config>, dir: &Path, device: Device) -> Result<HeldOut> {
    let size = R::image_size(&file.config);
    if R::eval_names().is_empty() {
        let set =
            ImageSet { images: vec![], labels: vec![], n: 0, channels: file.run.channels, height: size, width: size };
        return Ok(HeldOut { set, size, device });
    }
    let data = load_data(file.run.data(), size, file.run.channels)
        .map_err(|e| format!("{}: the run's data: {e}", dir.join("config.json").display()))?;
    Ok(HeldOut { set: data.split().1, size, device })
}

fn check_n(n: usize) -> Result<usize> {
    if (2..=100_000).contains(&n) { Ok(n) } else { Err(format!("--n {n}: must be from 2 to 100000").into()) }
}

/// `eval RUN` for an `R` run: writes RUN/eval.json, returns the summary line.
pub fn eval_run<R: Recipe>(dir: &Path, a: &EvalArgs) -> Result<String> {
    let device = resolve_device(&a.device)?;
    let classifier = if R::GENERATES { Some(Classifier::shipped(device)?) } else { None };
    let (model, file, step) = load_run::<R>(dir, device)?;
    // The run's own --eval-n by default, so eval repeats the curve's last point.
    let n = check_n(a.n.unwrap_or(file.run.eval_n))?;
    let held_out = held_out_of::<R>(&file, dir, device)?;
    let e = evaluate(&model, classifier.as_ref(), &held_out, n, a.seed, true)?;
    let path = write_eval_json::<R>(dir, &e, classifier.as_ref(), &held_out, a.seed, step)?;
    Ok(format!("{} at step {step}: {}; written to {}", R::NAME, e.line(), path.display()))
}

fn classifier_json(c: &Classifier) -> Value {
    json!({ "file": c.path.display().to_string(), "held_out_accuracy": c.held_out_accuracy, "features": 128 })
}

/// `eval --images PATH`: a folder of PNGs or one grid, on the same yardstick.
pub fn eval_images(path: &Path, a: &EvalArgs) -> Result<String> {
    if let Some(n) = a.n {
        check_n(n)?;
    }
    let (pixels, n) = if path.is_dir() {
        let (p, total) = from_png_folder(path)?;
        let n = a.n.unwrap_or(total);
        if n > total {
            return Err(format!("--n {n}: {} holds {total} PNGs", path.display()).into());
        }
        (p[..n * SIDE * SIDE].to_vec(), n)
    } else {
        from_png_grid(path, a.nrow, a.padding, a.n)?
    };
    if n < 2 {
        return Err(format!("--images {}: FID needs at least 2 images, found {n}", path.display()).into());
    }
    let classifier = Classifier::shipped(resolve_device(&a.device)?)?;
    let report = classifier.score(&pixels, n, None)?;
    if let Some(out) = &a.json {
        let v = json!({ "images": path.display().to_string(), "classifier": classifier_json(&classifier), "samples": report });
        write_atomic(out, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    Ok(format!("{}: {}", path.display(), report.line()))
}
