//! A run's settings: `RunConfig` (data, length, batch, seed, output
//! cadence; shared by every model) and the model's own config, together
//! the run's `config.json`. Each is one serde type that is also the CLI's
//! flags, so flag, file and constructor cannot drift apart.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// What every model's run has. `steps` and `batch` default per model
/// (`Recipe::DEFAULT_STEPS`, `DEFAULT_BATCH`); `data` defaults to the
/// shipped digits. config.json holds them resolved, `data` absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// An MNIST IDX directory or a folder of PNG/JPEG images [default: the 10,000 digits shipped in data/mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image channels for an image folder (1 = grey, 3 = RGB); MNIST is 1.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub channels: usize,
    /// Training steps in all [default: the model's own]. On --resume it sets a new target.
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// Train for this many epochs instead of --steps (whole batches per epoch).
    #[arg(long, conflicts_with = "steps", allow_negative_numbers = true)]
    #[serde(skip)]
    pub epochs: Option<usize>,
    /// Images per step [default: the model's own].
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Seeds the weights, the data order and every random draw of a step.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Write a sample grid every N steps (0: never; the final grid is always written).
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    pub sample_every: usize,
    /// Write a checkpoint every N steps (0: only at the end, on Ctrl-C or SIGTERM).
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    pub checkpoint_every: usize,
    /// Evaluate every N steps and at the end (FID of --eval-n samples, held-out numbers) into metrics.csv
    /// (0: never) [default: the model's own, 500; DDPM: only at the end, its samples are costly].
    #[arg(long, allow_negative_numbers = true)]
    #[serde(default)]
    pub eval_every: Option<usize>,
    /// Samples per evaluation during training (FID depends on it; `eval` uses 1000).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    #[serde(default = "thousand")]
    pub eval_n: usize,
}

fn thousand() -> usize {
    1000
}

impl RunConfig {
    /// Resolved `steps` (every config the loop holds has been through `run::settle`).
    pub fn steps(&self) -> usize {
        self.steps.unwrap_or(0)
    }
    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(0)
    }
    pub fn eval_every(&self) -> usize {
        self.eval_every.unwrap_or(0)
    }
    pub fn data(&self) -> &Path {
        self.data.as_deref().unwrap_or(Path::new(""))
    }
}

/// How this command runs, not what the run is: never saved.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Invocation {
    /// auto | cpu | cuda | cuda:N | wgpu | wgpu:N (auto: a CUDA GPU, else a hardware wgpu adapter, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run folder [default: runs/<model>-<UTC time>, never one that exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its checkpoint (its own settings; --steps or --epochs set a new target).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Let --out name a folder that holds files: kiln's own outputs there are replaced, other files kept.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// The flag a config key is set by.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// A value that must be at least 1 (steps, widths, sizes); errors name the flag.
pub fn at_least_one(key: &str, v: usize) -> Result<()> {
    if v == 0 { Err(format!("{} 0: must be at least 1", flag(key)).into()) } else { Ok(()) }
}

/// A learning rate or similar: positive and finite.
pub fn positive(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{} {v}: must be a positive number", flag(key)).into()) }
}

/// A value in [lo, hi] (Adam's betas, label targets).
pub fn within(key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if (lo..=hi).contains(&v) { Ok(()) } else { Err(format!("{} {v}: must be from {lo} to {hi}", flag(key)).into()) }
}

/// A run's config.json: the model's name, the run settings and the model's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile<C> {
    pub model: String,
    pub run: RunConfig,
    pub config: C,
}

impl<C: Serialize + DeserializeOwned> ConfigFile<C> {
    /// Reads `dir/config.json`, checking that it is a `model` run; errors name the file.
    /// `upgrade` turns an older layout of the file into this one.
    pub fn read(dir: &Path, model: &str, upgrade: fn(Value) -> Value) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let value = upgrade(value);
        let found = value.get("model").and_then(Value::as_str).unwrap_or("<none>");
        if found != model {
            return Err(format!(
                "{}: this is a {found} run, not {model} (use `train {found} --resume` or `sample {found}`)",
                path.display()
            )
            .into());
        }
        serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// The value of `key` in a serialised config section, if it is there.
fn field(section: &impl Serialize, key: &str) -> Option<Value> {
    serde_json::to_value(section).ok()?.get(key).cloned()
}

/// On resume: every flag the user gave (`given`, config keys) must agree
/// with the stored run, except the ones that only say how long to train or
/// how often to write (`steps`, `epochs`, `sample_every`,
/// `checkpoint_every`, `eval_every`), which are deliberate overrides. The error names
/// the flag, both values and the file.
pub fn check_resume_flags<C: Serialize>(
    given: &[String],
    asked_run: &RunConfig,
    asked_model: &C,
    stored: &ConfigFile<C>,
    file: &Path,
) -> Result<()> {
    const OVERRIDES: [&str; 5] = ["steps", "epochs", "sample_every", "checkpoint_every", "eval_every"];
    for key in given.iter().filter(|k| !OVERRIDES.contains(&k.as_str())) {
        let (asked, have) = if let Some(v) = field(asked_run, key) {
            (v, field(&stored.run, key))
        } else if let Some(v) = field(asked_model, key) {
            (v, field(&stored.config, key))
        } else {
            continue;
        };
        let same = match (key.as_str(), &asked, &have) {
            // Paths compare by the folder they name.
            ("data", Value::String(a), Some(Value::String(h))) => absolute(Path::new(a)).ok() == Some(PathBuf::from(h)),
            _ => Some(&asked) == have.as_ref(),
        };
        if !same {
            let have = have.map(|v| v.to_string()).unwrap_or_else(|| "unset".into());
            return Err(format!(
                "{} {asked}: the run being resumed has {key} = {have} ({}); a resumed run keeps its settings \
                 (only --steps, --epochs, --sample-every, --checkpoint-every and --eval-every may change); start a new run to change it",
                flag(key),
                file.display()
            )
            .into());
        }
    }
    Ok(())
}

/// `path` made absolute (so a run resumes from any directory), naming the flag on failure.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| format!("--data {}: {e}", path.display()).into())
}
