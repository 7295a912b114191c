//! `kiln-train train <model> [options]` and `kiln-train sample <model> ...`.
//! Built in release by `cargo xtask train` / `cargo xtask sample`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use kiln_train::dcgan;

#[derive(Parser)]
#[command(name = "kiln-train", about = "Train and sample kiln's generative models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model.
    Train {
        #[command(subcommand)]
        model: TrainModel,
    },
    /// Write a grid of samples from a run's checkpoint.
    Sample {
        #[command(subcommand)]
        model: SampleModel,
    },
    /// Fetch a data set.
    Data {
        #[command(subcommand)]
        set: DataSet,
    },
}

#[derive(Subcommand)]
enum DataSet {
    /// The full 70,000-digit MNIST, checked against published SHA-256 sums.
    Mnist {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrainModel {
    /// DCGAN on MNIST (default: the 10,000 digits shipped in data/mnist).
    Dcgan(dcgan::TrainOptions),
}

#[derive(Subcommand)]
enum SampleModel {
    Dcgan {
        /// The run folder (holds config.json and checkpoint.safetensors).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value_t = 64)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "grid.png")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // First Ctrl-C: finish the step and checkpoint. A second one kills.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let result = match Cli::parse().command {
        Command::Train { model: TrainModel::Dcgan(o) } => dcgan::train(&o, &stop).map(|s| {
            let last = s.last.map(|l| format!(", final loss_D {:.3} loss_G {:.3}", l.loss_d, l.loss_g)).unwrap_or_default();
            println!(
                "dcgan: {} steps in {:.1} s ({:.0} images/s{last}); samples, loss.png, metrics.csv and checkpoint in {}",
                s.steps_done,
                s.seconds,
                s.images_per_second,
                s.dir.display()
            );
        }),
        Command::Sample { model: SampleModel::Dcgan { checkpoint, n, seed, out } } => {
            dcgan::sample(&checkpoint, n, seed, &out).map(|()| println!("wrote {}", out.display()))
        }
        Command::Data { set: DataSet::Mnist { out } } => kiln_data::download_mnist(&out, kiln_data::MNIST_MIRRORS)
            .map(|()| println!("MNIST verified in {} (use --data {0})", out.display()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
