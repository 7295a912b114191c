//! The command line of `kiln-train` (`cargo xtask train|sample|data`).
//! Each model's flags are its recipe's config type, flattened in.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser, Subcommand};
use kiln_diffusion::DdpmConfig;
use kiln_eval::ClassifierConfig;
use kiln_flow::{GlowConfig, RealNvpConfig};
use kiln_gan::DcganConfig;
use kiln_vae::VaeConfig;

use crate::config::{Invocation, RunConfig};
use crate::evaluate::EvalArgs;
use crate::models::cgan::CganSampleArgs;
use crate::models::ddpm::DdpmSampleArgs;
use crate::models::flow::FlowSampleArgs;
use crate::sample::SampleArgs;

#[derive(Debug, Parser)]
#[command(name = "kiln-train", about = "Train and sample kiln's generative models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (or --resume a run).
    Train {
        #[command(subcommand)]
        model: TrainModel,
    },
    /// Write a grid of samples from a run's checkpoint.
    Sample {
        #[command(subcommand)]
        model: SampleModel,
    },
    /// Measure a run (FID, classifier score, modes, held-out numbers; writes RUN/eval.json) or any PNGs.
    Eval(EvalArgs),
    /// Write a `train classifier` run as the classifier `eval` measures with.
    ExportClassifier {
        /// The classifier run folder.
        run: PathBuf,
        /// The classifier file [default: the one kiln ships].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fetch a data set.
    Data {
        #[command(subcommand)]
        set: DataSet,
    },
}

/// `train <model>`: the run's flags, how to run, and the model's config.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs<C: clap::Args> {
    #[command(flatten)]
    pub run: RunConfig,
    #[command(flatten)]
    pub how: Invocation,
    #[command(flatten)]
    pub model: C,
}

#[derive(Debug, Subcommand)]
pub enum TrainModel {
    /// DCGAN (pytorch/examples) on MNIST (default: the 10,000 digits shipped in data/mnist).
    Dcgan(TrainArgs<DcganConfig>),
    /// Conditional GAN: the DCGAN networks with the class in (G: label embedding; D: projection).
    Cgan(TrainArgs<DcganConfig>),
    /// Variational autoencoder (Kingma & Welling) on dynamically binarized digits; held-out ELBO and IWAE NLL.
    Vae(TrainArgs<VaeConfig>),
    /// Denoising diffusion (Ho et al.): a U-Net on L_simple, EMA weights, DDIM samples; --conditional for guidance.
    Ddpm(TrainArgs<DdpmConfig>),
    /// RealNVP (Dinh et al.): affine couplings with checkerboard and channel masks; held-out bits/dim.
    Realnvp(TrainArgs<RealNvpConfig>),
    /// Glow (Kingma & Dhariwal): actnorm, LU 1×1 convolutions, affine couplings; held-out bits/dim.
    Glow(TrainArgs<GlowConfig>),
    /// The LeNet classifier `eval` measures samples with (digits outside the held-out split).
    Classifier(TrainArgs<ClassifierConfig>),
}

#[derive(Debug, Subcommand)]
pub enum SampleModel {
    /// Samples of a DCGAN run.
    Dcgan(SampleArgs),
    /// Samples of a conditional GAN run (classes 0–9 in turn, or one class with --label).
    Cgan(CganSampleArgs),
    /// Prior samples (decoder means) of a VAE run.
    Vae(SampleArgs),
    /// Samples of a DDPM run (EMA weights): --sampler ddpm|ddim, --steps, --eta, --label, --guidance, --strip.
    Ddpm(DdpmSampleArgs),
    /// Samples of a RealNVP run at a temperature (--temperature).
    Realnvp(FlowSampleArgs),
    /// Samples of a Glow run at a temperature (--temperature).
    Glow(FlowSampleArgs),
}

#[derive(Debug, Subcommand)]
pub enum DataSet {
    /// The full 70,000-digit MNIST, checked against published SHA-256 sums.
    Mnist {
        #[arg(long)]
        out: PathBuf,
    },
}

/// The ids of the flags given on the command line of the innermost
/// subcommand (`train dcgan --lr 1e-3` gives ["lr"]).
pub fn given_flags(matches: &ArgMatches) -> Vec<String> {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}
