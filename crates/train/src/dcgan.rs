//! `train dcgan` and `sample dcgan`: the run loop with progress, samples,
//! metrics, checkpoints, Ctrl-C handling and bit-exact resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use kiln_data::{ImageSet, Loader, LoaderConfig, load_image_folder, load_mnist, shipped_mnist_dir};
use kiln_gan::{Dcgan, DcganConfig};
use kiln_nn::{Checkpoint, load_checkpoint, save_checkpoint};
use kiln_tensor::{DType, Device, Rng, Tensor};
use serde_json::{Value, json};

use crate::Result;
use crate::images::{write_grid, write_plot};
use crate::run_dir::{Metrics, default_dir, read_column, write_atomic};

/// Options of `train dcgan` (see `kiln-train train dcgan --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainOptions {
    /// auto | cpu | cuda | cuda:N | wgpu | wgpu:N (auto: a CUDA GPU, else a hardware wgpu adapter, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// An MNIST IDX directory or a folder of PNG/JPEG images
    /// [default: the 10,000 digits shipped in data/mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image channels for an image folder (1 = grey, 3 = RGB); MNIST is 1.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Total training steps (one step = one D and one G update).
    #[arg(long, default_value_t = 1200)]
    pub steps: usize,
    /// Train for this many epochs instead of --steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// 64 is the reference DCGAN; 32 (the default) has one stage fewer.
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    #[arg(long, default_value_t = 64)]
    pub ngf: usize,
    #[arg(long, default_value_t = 64)]
    pub ndf: usize,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One-sided label smoothing: real targets 0.9 instead of 1.
    #[arg(long)]
    pub label_smoothing: bool,
    /// Run folder [default: runs/dcgan-<UTC timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub sample_every: usize,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub dir: PathBuf,
    pub steps_done: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub last: Option<kiln_gan::StepStats>,
}

const CHECKPOINT: &str = "checkpoint.safetensors";
const METRICS_HEADER: &str = "step,epoch,loss_d,loss_g,d_x,d_g_z1,d_g_z2,seconds";

/// `auto` takes a CUDA GPU, else a hardware wgpu adapter, else the CPU;
/// `wgpu` (or `wgpu:N`) insists on one (a software adapter only with
/// KILN_WGPU_ALLOW_SOFTWARE=1).
pub fn resolve_device(name: &str) -> Result<Device> {
    let wgpu = |n: usize| -> Result<Device> {
        kiln_tensor::gpu::wgpu_device(n).map_err(|e| format!("--device {name}: {e}"))?;
        Ok(Device::Wgpu(n))
    };
    let cuda = |n: usize| -> Result<Device> {
        kiln_tensor::cuda::cuda_device(n).map_err(|e| format!("--device {name}: {e}"))?;
        Ok(Device::Cuda(n))
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => match (kiln_tensor::cuda::cuda_device(0), kiln_tensor::gpu::wgpu_device(0)) {
            (Ok(d), _) if !d.is_emulated() => Ok(Device::Cuda(0)),
            (_, Ok(d)) if !d.is_software() => Ok(Device::Wgpu(0)),
            _ => Ok(Device::Cpu),
        },
        "wgpu" => wgpu(0),
        "cuda" => cuda(0),
        other => {
            if let Some(n) = other.strip_prefix("wgpu:").and_then(|n| n.parse().ok()) {
                wgpu(n)
            } else if let Some(n) = other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                cuda(n)
            } else {
                Err(format!("--device {other}: expected auto, cpu, cuda, cuda:N, wgpu or wgpu:N").into())
            }
        }
    }
}

fn config_json(o: &TrainOptions, data: &Path, nc: usize) -> Value {
    json!({
        "model": "dcgan", "data": data.display().to_string(), "steps": o.steps, "batch": o.batch,
        "image_size": o.image_size, "nz": 100, "ngf": o.ngf, "ndf": o.ndf, "nc": nc, "lr": o.lr,
        "beta1": 0.5, "seed": o.seed, "real_label": if o.label_smoothing { 0.9 } else { 1.0 },
        "sample_every": o.sample_every, "checkpoint_every": o.checkpoint_every,
    })
}

fn get<T: serde::de::DeserializeOwned>(cfg: &Value, key: &str) -> Result<T> {
    Ok(serde_json::from_value(cfg.get(key).cloned().ok_or_else(|| format!("config.json has no {key}"))?)?)
}

fn model_config(cfg: &Value) -> Result<DcganConfig> {
    Ok(DcganConfig {
        nz: get(cfg, "nz")?,
        ngf: get(cfg, "ngf")?,
        ndf: get(cfg, "ndf")?,
        nc: get(cfg, "nc")?,
        image_size: get(cfg, "image_size")?,
        lr: get(cfg, "lr")?,
        beta1: get(cfg, "beta1")?,
        real_label: get(cfg, "real_label")?,
    })
}

fn save(dir: &Path, m: &Dcgan, step: usize, rng: &Rng, cfg: &Value) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vec![];
    for (prefix, vs) in [("g.", &m.g_store), ("d.", &m.d_store)] {
        tensors.extend(vs.named_tensors().into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
    }
    let (og, sg) = m.opt_g.state();
    let (od, sd) = m.opt_d.state();
    tensors.extend(og.into_iter().map(|(n, t)| (format!("opt_g.{n}"), t)));
    tensors.extend(od.into_iter().map(|(n, t)| (format!("opt_d.{n}"), t)));
    let rng_state = rng.state().map(|v| v.to_string()).join(",");
    let meta = HashMap::from([
        ("step".to_string(), step.to_string()),
        ("rng".to_string(), rng_state),
        ("opt_g_step".to_string(), sg.to_string()),
        ("opt_d_step".to_string(), sd.to_string()),
        ("config".to_string(), cfg.to_string()),
    ]);
    save_checkpoint(&dir.join(CHECKPOINT), &tensors, &meta)?;
    Ok(())
}

/// MNIST IDX files when the folder has them, else a folder of images.
fn load_data(path: &Path, size: usize, channels: usize) -> Result<ImageSet> {
    let idx = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte"];
    if idx.iter().any(|f| path.join(f).exists()) {
        if channels != 1 {
            return Err(format!("{}: MNIST has 1 channel, --channels {channels} was given", path.display()).into());
        }
        return Ok(load_mnist(path)?);
    }
    if !path.is_dir() {
        return Err(format!("{}: no such data folder", path.display()).into());
    }
    Ok(load_image_folder(path, size, channels)?)
}

/// Restores model, optimizers and generator state; returns (step, rng).
fn restore(dir: &Path, m: &mut Dcgan) -> Result<(usize, Rng)> {
    let path = dir.join(CHECKPOINT);
    let ck: Checkpoint = load_checkpoint(&path)?;
    ck.restore(&m.g_store, "g.", &path)?;
    ck.restore(&m.d_store, "d.", &path)?;
    for (prefix, opt, key) in [("opt_g.", &mut m.opt_g, "opt_g_step"), ("opt_d.", &mut m.opt_d, "opt_d_step")] {
        let state: HashMap<String, Tensor> =
            ck.tensors.iter().filter_map(|(n, t)| n.strip_prefix(prefix).map(|k| (k.to_string(), t.clone()))).collect();
        opt.load_state(&state, ck.meta(key, &path)?.parse()?)?;
    }
    let words: Vec<u64> = ck.meta("rng", &path)?.split(',').map(str::parse).collect::<std::result::Result<_, _>>()?;
    let rng = Rng::from_state(words.try_into().map_err(|_| format!("{}: bad rng state", path.display()))?);
    Ok((ck.meta("step", &path)?.parse()?, rng))
}

fn fixed_noise(m: &Dcgan, seed: u64, n: usize) -> Result<Tensor> {
    Ok(m.noise(n, &mut Rng::new(seed ^ 0xF1ED))?)
}

fn write_samples(path: &Path, m: &Dcgan, noise: &Tensor) -> Result<()> {
    let imgs = m.sample(noise)?;
    let s = imgs.shape().to_vec();
    write_grid(path, &imgs.to_vec::<f32>()?, s[0], s[1], s[2], 8)?;
    Ok(())
}

/// Trains (or resumes) a DCGAN; `stop` is set by Ctrl-C and ends the run
/// after the current step with a checkpoint.
pub fn train(o: &TrainOptions, stop: &AtomicBool) -> Result<Summary> {
    let device = resolve_device(&o.device)?;
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(format!("--lr {}: the learning rate must be a positive number", o.lr).into());
    }
    let (dir, cfg) = match &o.resume {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join("config.json"))
                .map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
            let mut cfg: Value = serde_json::from_str(&text)?;
            // A larger --steps extends a resumed run.
            if o.steps > get::<usize>(&cfg, "steps")? {
                cfg["steps"] = json!(o.steps);
            }
            (dir.clone(), cfg)
        }
        None => {
            let data = o.data.clone().unwrap_or_else(shipped_mnist_dir);
            let dir = o.out.clone().unwrap_or_else(|| default_dir("dcgan"));
            std::fs::create_dir_all(dir.join("samples"))?;
            (dir, config_json(o, &data, o.channels))
        }
    };
    let data_dir = PathBuf::from(get::<String>(&cfg, "data")?);
    let data = Arc::new(load_data(&data_dir, get(&cfg, "image_size")?, get(&cfg, "nc")?)?);
    let (batch, seed): (usize, u64) = (get(&cfg, "batch")?, get(&cfg, "seed")?);
    let mut model = Dcgan::new(model_config(&cfg)?, device, seed)?;
    let size = model.config.image_size;
    let steps_per_epoch = (data.n / batch.max(1)).max(1);
    let total = match (o.epochs, &o.resume) {
        (Some(e), None) => e * steps_per_epoch,
        _ => get(&cfg, "steps")?,
    };
    let mut cfg = cfg;
    cfg["steps"] = json!(total);
    write_atomic(&dir.join("config.json"), &serde_json::to_string_pretty(&cfg)?)?;
    let (start, mut rng) = match &o.resume {
        Some(_) => restore(&dir, &mut model)?,
        None => (0, Rng::new(seed)),
    };
    let loader = Loader::new(data.clone(), LoaderConfig { batch, image_size: size, seed }, start)?;
    let fixed = fixed_noise(&model, seed, 64)?;
    let mut metrics = Metrics::open(&dir.join("metrics.csv"), METRICS_HEADER, start)?;
    let (sample_every, checkpoint_every): (usize, usize) = (get(&cfg, "sample_every")?, get(&cfg, "checkpoint_every")?);

    let bar = if o.quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let mut step = start;
    let mut last = None;
    while step < total {
        let b = loader.next_batch().ok_or("the data loader stopped")?;
        let real = Tensor::from_slice(&b.images, &[batch, data.channels, size, size], device)?;
        let noise = model.noise(batch, &mut rng)?;
        let stats = model.train_step(&real, &noise)?;
        if !stats.is_finite() {
            bar.abandon();
            return Err(format!(
                "step {step}: a loss is not finite ({stats:?}); training stopped, the last good checkpoint is {}",
                dir.join(CHECKPOINT).display()
            )
            .into());
        }
        step += 1;
        let secs = t0.elapsed().as_secs_f64();
        let ips = (step - start) as f64 * batch as f64 / secs.max(1e-9);
        metrics.row(&[
            step.to_string(),
            b.epoch.to_string(),
            format!("{:.6}", stats.loss_d),
            format!("{:.6}", stats.loss_g),
            format!("{:.6}", stats.d_x),
            format!("{:.6}", stats.d_g_z1),
            format!("{:.6}", stats.d_g_z2),
            format!("{secs:.3}"),
        ])?;
        bar.set_position(step as u64);
        bar.set_message(format!(
            "epoch {} loss_D {:.3} loss_G {:.3} D(x) {:.2} D(G(z)) {:.2}/{:.2} {ips:.0} img/s",
            b.epoch, stats.loss_d, stats.loss_g, stats.d_x, stats.d_g_z1, stats.d_g_z2
        ));
        last = Some(stats);
        let stopping = stop.load(Ordering::SeqCst);
        if step % sample_every == 0 {
            write_samples(&dir.join(format!("samples/step-{step:06}.png")), &model, &fixed)?;
        }
        if step % checkpoint_every == 0 || stopping {
            metrics.flush()?;
            save(&dir, &model, step, &rng, &cfg)?;
        }
        if stopping {
            bar.println("interrupted: checkpoint written; continue with --resume");
            break;
        }
    }
    bar.finish_and_clear();
    metrics.flush()?;
    save(&dir, &model, step, &rng, &cfg)?;
    write_samples(&dir.join("samples/final.png"), &model, &fixed)?;
    let metrics_path = dir.join("metrics.csv");
    let smooth = |v: Vec<f64>| moving_average(&v, 25);
    let (loss_d, loss_g) = (smooth(read_column(&metrics_path, 2)), smooth(read_column(&metrics_path, 3)));
    write_plot(&dir.join("loss.png"), &[&loss_d, &loss_g], &["loss D", "loss G"], 640, 360)?;
    let seconds = t0.elapsed().as_secs_f64();
    let ips = (step - start) as f64 * batch as f64 / seconds.max(1e-9);
    Ok(Summary { dir, steps_done: step - start, seconds, images_per_second: ips, last })
}

/// Mean over the last `window` values at each point (shorter at the start).
fn moving_average(v: &[f64], window: usize) -> Vec<f64> {
    let mut sum = 0.0;
    (0..v.len())
        .map(|i| {
            sum += v[i];
            if i >= window {
                sum -= v[i - window];
            }
            sum / (i + 1).min(window) as f64
        })
        .collect()
}

/// `sample dcgan`: a grid of `n` samples from a run's checkpoint.
pub fn sample(run: &Path, n: usize, seed: u64, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(run.join("config.json"))
        .map_err(|e| format!("{}: {e}", run.join("config.json").display()))?;
    let cfg: Value = serde_json::from_str(&text)?;
    let mut model = Dcgan::new(model_config(&cfg)?, Device::Cpu, 0)?;
    restore(run, &mut model)?;
    let noise = model.noise(n, &mut Rng::new(seed))?;
    write_samples(out, &model, &noise)?;
    Ok(())
}

/// Every parameter and buffer of both networks, as f32 values by name.
pub fn parameters(m: &Dcgan) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for (prefix, vs) in [("g.", &m.g_store), ("d.", &m.d_store)] {
        for (n, t) in vs.named_tensors() {
            out.push((format!("{prefix}{n}"), t.to_dtype(DType::F32)?.to_vec::<f32>()?));
        }
    }
    Ok(out)
}

/// Loads a run's model (for tests and tools).
pub fn load_run(run: &Path) -> Result<Dcgan> {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json"))?)?;
    let mut model = Dcgan::new(model_config(&cfg)?, Device::Cpu, 0)?;
    restore(run, &mut model)?;
    Ok(model)
}
