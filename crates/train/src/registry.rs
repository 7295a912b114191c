//! The one place that lists the models: a `match` per command, an arm per
//! model. A new model adds its recipe (models/<name>.rs), one variant in
//! `cli.rs` per command, and one arm here; the run loop stays as it is.

use std::sync::atomic::AtomicBool;

use kiln_diffusion::Ddpm;
use kiln_eval::lenet::LeNetTrainer;
use kiln_flow::{Glow, RealNvp};
use kiln_gan::{Cgan, Dcgan};
use kiln_vae::Vae;

use crate::Result;
use crate::cli::{Command, DataSet, SampleModel, TrainArgs, TrainModel};
use crate::evaluate::{EvalArgs, eval_images, eval_run};
use crate::models::cgan::sample_cgan;
use crate::models::classifier::export_classifier;
use crate::models::ddpm::sample_ddpm;
use crate::models::flow::sample_flow;
use crate::recipe::Recipe;
use crate::run::{Summary, TrainRequest, train};
use crate::sample::sample;

/// Runs one command; returns the line to print on success.
pub fn run(command: Command, given: Vec<String>, stop: &AtomicBool) -> Result<String> {
    match command {
        Command::Train { model } => match model {
            TrainModel::Dcgan(a) => train_model::<Dcgan>(a, given, stop),
            TrainModel::Cgan(a) => train_model::<Cgan>(a, given, stop),
            TrainModel::Vae(a) => train_model::<Vae>(a, given, stop),
            TrainModel::Ddpm(a) => train_model::<Ddpm>(a, given, stop),
            TrainModel::Realnvp(a) => train_model::<RealNvp>(a, given, stop),
            TrainModel::Glow(a) => train_model::<Glow>(a, given, stop),
            TrainModel::Classifier(a) => train_model::<LeNetTrainer>(a, given, stop),
        },
        Command::Sample { model } => match model {
            SampleModel::Dcgan(a) => sample::<Dcgan>(&a),
            SampleModel::Cgan(a) => sample_cgan(&a),
            SampleModel::Vae(a) => sample::<Vae>(&a),
            SampleModel::Ddpm(a) => sample_ddpm(&a),
            SampleModel::Realnvp(a) => sample_flow::<RealNvp>(&a),
            SampleModel::Glow(a) => sample_flow::<Glow>(&a),
        },
        Command::Eval(a) => eval(&a),
        Command::ExportClassifier { run, out } => {
            export_classifier(&run, &out.unwrap_or_else(kiln_eval::shipped_classifier_path))
        }
        Command::Data { set: DataSet::Mnist { out } } => {
            kiln_data::download_mnist(&out, kiln_data::MNIST_MIRRORS)?;
            Ok(format!("MNIST verified in {} (use --data {0})", out.display()))
        }
    }
}

/// `eval RUN` goes to the recipe named in RUN/config.json.
fn eval(a: &EvalArgs) -> Result<String> {
    let Some(dir) = &a.run else {
        return eval_images(a.images.as_deref().ok_or("eval: give a run folder or --images")?, a);
    };
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match config.get("model").and_then(serde_json::Value::as_str) {
        Some(Dcgan::NAME) => eval_run::<Dcgan>(dir, a),
        Some(Cgan::NAME) => eval_run::<Cgan>(dir, a),
        Some(Vae::NAME) => eval_run::<Vae>(dir, a),
        Some(Ddpm::NAME) => eval_run::<Ddpm>(dir, a),
        Some(RealNvp::NAME) => eval_run::<RealNvp>(dir, a),
        Some(Glow::NAME) => eval_run::<Glow>(dir, a),
        Some(LeNetTrainer::NAME) => eval_run::<LeNetTrainer>(dir, a),
        other => Err(format!("{}: model {other:?} is not one kiln trains", path.display()).into()),
    }
}

fn train_model<R: Recipe>(a: TrainArgs<R::Config>, given: Vec<String>, stop: &AtomicBool) -> Result<String>
where
    R::Config: clap::Args,
{
    let s = train::<R>(&TrainRequest { run: a.run, model: a.model, how: a.how, given }, stop)?;
    Ok(summary_line(R::NAME, &s))
}

pub fn summary_line(name: &str, s: &Summary) -> String {
    let last: Vec<String> = s.last.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
    let how = if s.interrupted { "stopped at" } else { "at" };
    format!(
        "{name}: {} steps in {:.1} s ({:.0} images/s), {how} step {}{}{}; samples, plots, metrics.csv and checkpoint in {}",
        s.steps_done,
        s.seconds,
        s.images_per_second,
        s.step,
        if last.is_empty() { "" } else { ", last " },
        last.join(" "),
        s.dir.display()
    )
}
