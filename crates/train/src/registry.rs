//! The one place that lists the models: a `match` per command, an arm per
//! model. A new model adds its recipe (models/<name>.rs), one variant in
//! `cli.rs` per command, and one arm here; the run loop stays as it is.

use std::sync::atomic::AtomicBool;

use kiln_gan::Dcgan;

use crate::Result;
use crate::cli::{Command, DataSet, SampleModel, TrainArgs, TrainModel};
use crate::recipe::Recipe;
use crate::run::{Summary, TrainRequest, train};
use crate::sample::sample;

/// Runs one command; returns the line to print on success.
pub fn run(command: Command, given: Vec<String>, stop: &AtomicBool) -> Result<String> {
    match command {
        Command::Train { model } => match model {
            TrainModel::Dcgan(a) => train_model::<Dcgan>(a, given, stop),
        },
        Command::Sample { model } => match model {
            SampleModel::Dcgan(a) => sample::<Dcgan>(&a),
        },
        Command::Data { set: DataSet::Mnist { out } } => {
            kiln_data::download_mnist(&out, kiln_data::MNIST_MIRRORS)?;
            Ok(format!("MNIST verified in {} (use --data {0})", out.display()))
        }
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
