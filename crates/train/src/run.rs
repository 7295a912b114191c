//! The run loop, once for every model: settle the config (new run or
//! resume), check everything, only then touch the run folder; then steps
//! with a progress bar, metrics.csv, sample grids, checkpoints, the NaN
//! stop and Ctrl-C/SIGTERM; at the end the final grid and the plots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use kiln_data::{ImageSet, Loader, LoaderConfig, load_image_folder, load_mnist, shipped_mnist_dir};
use kiln_tensor::{Device, Rng, Tensor};

use crate::Result;
use crate::checkpoint::{self, model_non_finite};
use crate::config::{ConfigFile, Invocation, RunConfig, absolute, at_least_one, check_resume_flags, flag};
use crate::device::{describe, resolve_device};
use crate::evaluate::{Evaluation, eval_columns, evaluate, held_out_numbers, write_eval_json};
use crate::images::write_image_grid;
use crate::plot::{FID_PLOTS, write_plot};
use crate::recipe::{Batch, HeldOut, Recipe, Setup};
use crate::run_dir::{Metrics, check_out, claim_default, claim_out, read_series, write_atomic};

/// One `train <model>` command.
#[derive(Debug, Clone)]
pub struct TrainRequest<C> {
    pub run: RunConfig,
    pub model: C,
    pub how: Invocation,
    /// The config keys set on the command line (e.g. "lr"): on resume each
    /// must agree with the run's config.json.
    pub given: Vec<String>,
}

/// What a finished (or stopped) command did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub dir: PathBuf,
    /// Steps this command ran, and the run's step at its end.
    pub steps_done: usize,
    pub step: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// The last step's scalars, by name.
    pub last: Vec<(&'static str, f64)>,
    pub interrupted: bool,
}

/// Folder for runs without --out.
const RUNS: &str = "runs";
/// The grid every `sample_every` steps and at the end: the same noise each time.
const GRID: usize = 64;
const GRID_SEED: u64 = 0xF1ED;

fn check_run(run: &RunConfig) -> Result<()> {
    let bad = |key: &str, v: &dyn std::fmt::Display, why: &str| Err(format!("{} {v}: {why}", flag(key)).into());
    if ![1, 3].contains(&run.channels) {
        return bad("channels", &run.channels, "must be 1 (grey) or 3 (RGB)");
    }
    if let Some(s) = run.steps {
        at_least_one("steps", s)?;
    }
    if let Some(e) = run.epochs {
        at_least_one("epochs", e)?;
    }
    if let Some(b) = run.batch.filter(|b| !(1..=65_536).contains(b)) {
        return bad("batch", &b, "must be from 1 to 65536");
    }
    if !(2..=100_000).contains(&run.eval_n) {
        return bad("eval_n", &run.eval_n, "must be from 2 to 100000");
    }
    Ok(())
}

/// MNIST IDX files when the folder has them, else a folder of images.
pub fn load_data(path: &Path, size: usize, channels: usize) -> Result<ImageSet> {
    let idx = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte"];
    if idx.iter().any(|f| path.join(f).exists()) {
        if channels != 1 {
            return Err(format!("{}: MNIST has 1 channel, --channels {channels} was given", path.display()).into());
        }
        return Ok(load_mnist(path)?);
    }
    if !path.is_dir() {
        return Err(format!("--data {}: no such data folder", path.display()).into());
    }
    Ok(load_image_folder(path, size, channels)?)
}

/// The run's config after the command's flags: for a new run the flags
/// with defaults filled in; on resume the stored config with the allowed
/// overrides. Reads, never writes.
fn settle<R: Recipe>(req: &TrainRequest<R::Config>) -> Result<ConfigFile<R::Config>> {
    check_run(&req.run)?;
    let Some(dir) = &req.how.resume else {
        R::check(&req.model)?;
        let data = req.run.data.clone().unwrap_or_else(shipped_mnist_dir);
        let run = RunConfig {
            data: Some(absolute(&data)?),
            steps: Some(req.run.steps.unwrap_or(R::DEFAULT_STEPS)),
            batch: Some(req.run.batch.unwrap_or(R::DEFAULT_BATCH)),
            eval_every: Some(req.run.eval_every.unwrap_or(R::DEFAULT_EVAL_EVERY)),
            ..req.run.clone()
        };
        return Ok(ConfigFile { model: R::NAME.into(), run, config: req.model.clone() });
    };
    if req.how.overwrite {
        return Err("--overwrite: a resumed run is continued, never overwritten; drop --overwrite".into());
    }
    if let Some(out) = &req.how.out
        && std::fs::canonicalize(out).ok() != std::fs::canonicalize(dir).ok()
    {
        return Err(format!("--out {}: a resumed run stays in its folder {}", out.display(), dir.display()).into());
    }
    let mut file = ConfigFile::<R::Config>::read(dir, R::NAME, R::upgrade_config)?;
    check_resume_flags(&req.given, &req.run, &req.model, &file, &dir.join("config.json"))?;
    R::check(&file.config).map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
    let given = |k: &str| req.given.iter().any(|g| g == k);
    if given("steps") {
        file.run.steps = req.run.steps;
    }
    if given("sample_every") {
        file.run.sample_every = req.run.sample_every;
    }
    if given("checkpoint_every") {
        file.run.checkpoint_every = req.run.checkpoint_every;
    }
    if given("eval_every") {
        file.run.eval_every = req.run.eval_every;
    }
    file.run.epochs = req.run.epochs;
    Ok(file)
}

/// Trains (or resumes) a `R` model; `stop` (Ctrl-C, SIGTERM) ends the run
/// after the current step with a checkpoint.
pub fn train<R: Recipe>(req: &TrainRequest<R::Config>, stop: &AtomicBool) -> Result<Summary> {
    let device = resolve_device(&req.how.device)?;
    let mut file = settle::<R>(req)?;
    if let (None, Some(out)) = (&req.how.resume, &req.how.out) {
        check_out(out, req.how.overwrite)?;
    }
    let size = R::image_size(&file.config);
    let (batch, seed) = (file.run.batch(), file.run.seed);
    // Models train outside the held-out split (kiln_data::split).
    let (data, held_out) = load_data(file.run.data(), size, file.run.channels)?.split();
    let (data, held_out) = (Arc::new(data), HeldOut { set: held_out, size, device });
    if data.n < batch {
        return Err(format!("--batch {batch}: the data set has only {} training images", data.n).into());
    }
    let eval_every = file.run.eval_every();
    let classifier = match eval_every > 0 && R::GENERATES {
        true => Some(
            kiln_eval::Classifier::shipped(device)
                .map_err(|e| format!("the classifier that measures samples: {e} (train without it: --eval-every 0)"))?,
        ),
        false => None,
    };
    let steps_per_epoch = data.n / batch;
    if let Some(e) = file.run.epochs.take() {
        file.run.steps = Some(e.checked_mul(steps_per_epoch).ok_or(format!("--epochs {e}: too many steps"))?);
    }
    let total = file.run.steps();
    let mut model = R::build(&file.config, &Setup { device, channels: file.run.channels, seed })?;
    let (dir, start, mut rng) = match &req.how.resume {
        Some(dir) => {
            let (start, rng) = checkpoint::restore(dir, &mut model)?;
            if total < start {
                return Err(format!("--steps {total}: the run is already at step {start}").into());
            }
            (dir.clone(), start, rng)
        }
        None => (PathBuf::new(), 0, Rng::new(seed)),
    };
    let loader = Loader::new(data.clone(), LoaderConfig { batch, image_size: size, seed }, start)?;
    let config_json = file.to_json()?;

    // Every check has passed: from here on the run folder changes.
    let dir = match (&req.how.resume, &req.how.out) {
        (Some(_), _) => dir,
        (None, Some(out)) => {
            claim_out(out)?;
            out.clone()
        }
        (None, None) => claim_default(Path::new(RUNS), R::NAME)?,
    };
    let samples = dir.join("samples");
    std::fs::create_dir_all(&samples).map_err(|e| format!("{}: {e}", samples.display()))?;
    write_atomic(&dir.join("config.json"), config_json.as_bytes())?;
    if !req.how.quiet {
        eprintln!(
            "{} on {}: {} images ({} held out), step {start} of {total}, run folder {}",
            R::NAME,
            describe(device),
            data.n,
            held_out.set.n,
            dir.display()
        );
    }

    let names = R::stat_names();
    let evals = eval_columns::<R>();
    // Evaluation columns are empty except on evaluation steps; seconds stays last.
    let header = format!("step,epoch,{},seconds", names.iter().chain(&evals).copied().collect::<Vec<_>>().join(","));
    let mut metrics = Metrics::open(&dir.join("metrics.csv"), &header, start)?;
    let bar = if req.how.quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    let grid = |model: &R, name: String| -> Result<()> {
        write_image_grid(&samples.join(name), &model.sample(GRID, &mut Rng::new(seed ^ GRID_SEED))?, 8)
    };
    let t0 = Instant::now();
    let (mut step, mut saved_at) = (start, req.how.resume.as_ref().map(|_| start));
    let (mut last, mut interrupted) = (vec![], false);
    let mut last_eval: Option<Evaluation> = None;
    while step < total {
        let b = loader.next_batch().ok_or("the data loader stopped")?;
        let images = Tensor::from_slice(&b.images, &[batch, data.channels, size, size], device)?;
        let stats = model.train_step(&Batch { images, labels: b.labels }, &mut rng)?;
        step += 1;
        let bad = match names.iter().zip(&stats).find(|(_, v)| !v.is_finite()) {
            Some((n, v)) => Some(format!("{n} is {v}")),
            None => model_non_finite(&model)?.map(|t| format!("{t} is not finite (the losses were)")),
        };
        if let Some(what) = bad {
            bar.abandon();
            metrics.flush()?;
            let kept = match saved_at {
                Some(s) => format!("the last good checkpoint is {} (step {s})", dir.join(checkpoint::FILE).display()),
                None => "no checkpoint had been written".into(),
            };
            return Err(format!("step {step}: {what}; training stopped, {kept}").into());
        }
        let every = |n: usize| n > 0 && step % n == 0;
        let eval_now = eval_every > 0 && (every(eval_every) || step == total);
        let evaluation = match eval_now {
            true => Some(evaluate(&model, classifier.as_ref(), &held_out, file.run.eval_n, 0, false)?),
            false => None,
        };
        let secs = metrics.seconds_before + t0.elapsed().as_secs_f64();
        let mut row = vec![step.to_string(), b.epoch.to_string()];
        row.extend(stats.iter().map(|v| format!("{v:.6}")));
        match &evaluation {
            Some(e) => row.extend(e.columns().iter().map(|v| v.map(|v| format!("{v:.6}")).unwrap_or_default())),
            None => row.extend(evals.iter().map(|_| String::new())),
        }
        row.push(format!("{secs:.3}"));
        if let Some(e) = evaluation.as_ref().filter(|_| !req.how.quiet) {
            bar.println(format!("step {step}: {}", e.line()));
        }
        if evaluation.is_some() {
            last_eval = evaluation;
        }
        metrics.row(&row)?;
        let ips = (step - start) as f64 * batch as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let shown: Vec<String> = names.iter().zip(&stats).map(|(n, v)| format!("{n} {v:.3}")).collect();
        bar.set_position(step as u64);
        bar.set_message(format!("epoch {} {} {ips:.0} img/s", b.epoch, shown.join(" ")));
        last = names.iter().copied().zip(stats).collect();
        interrupted = stop.load(Ordering::SeqCst);
        if R::GENERATES && every(file.run.sample_every) {
            grid(&model, format!("step-{step:06}.png"))?;
        }
        if every(file.run.checkpoint_every) || interrupted {
            metrics.flush()?;
            checkpoint::save(&dir, &mut model, step, &rng, &config_json)?;
            saved_at = Some(step);
        }
        if interrupted {
            bar.println(format!(
                "stopped: checkpoint at step {step} written; continue with --resume {}",
                dir.display()
            ));
            break;
        }
    }
    bar.finish_and_clear();
    metrics.flush()?;
    if saved_at != Some(step) {
        checkpoint::save(&dir, &mut model, step, &rng, &config_json)?;
    }
    if R::GENERATES {
        grid(&model, "final.png".into())?;
    }
    for p in model.pictures(&held_out, &mut Rng::new(seed ^ GRID_SEED))? {
        write_image_grid(&samples.join(format!("{}.png", p.name)), &p.images, p.cols)?;
    }
    // A finished run is measured in full (eval.json), as `eval RUN` would.
    if eval_every > 0 && !interrupted {
        // The last step was evaluated (same samples, same N): only the
        // held-out numbers are taken again, in full. A resume that ran no
        // step evaluates from scratch.
        let e = match last_eval {
            Some(quick) => {
                Evaluation { samples: quick.samples, held_out: held_out_numbers(&model, &held_out, 0, true)? }
            }
            None => evaluate(&model, classifier.as_ref(), &held_out, file.run.eval_n, 0, true)?,
        };
        write_eval_json::<R>(&dir, &e, classifier.as_ref(), &held_out, 0, step)?;
        if !req.how.quiet {
            eprintln!("{} at step {step}: {}", R::NAME, e.line());
        }
    }
    let metrics_path = dir.join("metrics.csv");
    for plot in R::plots() {
        let series = read_series(&metrics_path, plot.x, plot.series)?;
        // Per-step scalars are noisy; evaluations are few and drawn as they are.
        let window = if plot.series.iter().all(|s| evals.contains(s)) { 1 } else { 25 };
        write_plot(&dir.join(format!("{}.png", plot.name)), plot, &series, window)?;
    }
    if classifier.is_some() {
        for plot in &FID_PLOTS {
            let series = read_series(&metrics_path, plot.x, plot.series)?;
            write_plot(&dir.join(format!("{}.png", plot.name)), plot, &series, 1)?;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let images_per_second = (step - start) as f64 * batch as f64 / seconds.max(1e-9);
    Ok(Summary { dir, steps_done: step - start, step, seconds, images_per_second, last, interrupted })
}

/// A model restored from a run folder (for `sample`, `eval` and tests).
pub fn load_run<R: Recipe>(dir: &Path, device: Device) -> Result<(R, ConfigFile<R::Config>, usize)> {
    let file = ConfigFile::<R::Config>::read(dir, R::NAME, R::upgrade_config)?;
    let mut model = R::build(&file.config, &Setup { device, channels: file.run.channels, seed: file.run.seed })?;
    let (step, _) = checkpoint::restore(dir, &mut model)?;
    Ok((model, file, step))
}
