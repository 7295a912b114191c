//! The run loop, tested once per recipe: DCGAN and a toy denoising
//! autoencoder with dropout (proving the seam is generic and that every
//! random draw is checkpointed). Each test is generic over `Recipe`;
//! `recipe_suite!` instantiates all of them per model.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kiln::diffusion::{Ddpm, DdpmConfig};
use kiln::flow::{Glow, GlowConfig, RealNvp, RealNvpConfig};
use kiln::gan::{Cgan, Dcgan, DcganConfig};
use kiln::nn::loss::{Reduction, mse_loss};
use kiln::nn::{Adam, AdamConfig, Dropout, Linear, Module, VarStore};
use kiln::tensor::Rng;
use kiln::train::config::{Invocation, RunConfig};
use kiln::train::run_dir::claim_default;
use kiln::train::{Batch, HeldOut, Plot, Recipe, Setup, TrainRequest, load_run, train};
use kiln::vae::{Vae, VaeConfig};
use kiln::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// A folder path that does not exist yet (the trainer creates it).
pub fn fresh(name: &str) -> PathBuf {
    let d = crate::common::scratch_dir(&format!("train-{name}"));
    std::fs::remove_dir(&d).unwrap();
    d
}

pub fn request<C: Clone>(model: &C, out: &Path, steps: usize) -> TrainRequest<C> {
    TrainRequest {
        run: RunConfig {
            data: None,
            channels: 1,
            steps: Some(steps),
            epochs: None,
            batch: Some(8),
            seed: 5,
            sample_every: 2,
            checkpoint_every: 2,
            // Every suite test also runs the evaluation path (FID of 16 samples, held-out numbers).
            eval_every: Some(2),
            eval_n: 16,
        },
        model: model.clone(),
        how: Invocation { device: "cpu".into(), out: Some(out.to_path_buf()), quiet: true, ..Default::default() },
        given: vec![],
    }
}

/// `--resume dir` with the given flags (config keys) set as in `req`.
pub fn resume<C: Clone>(mut req: TrainRequest<C>, dir: &Path, given: &[&str]) -> TrainRequest<C> {
    req.how.resume = Some(dir.to_path_buf());
    req.how.out = None;
    req.given = given.iter().map(|s| s.to_string()).collect();
    req
}

/// 3 steps of `cfg` on each GPU backend present (wgpu on lavapipe, CUDA on
/// its CPU emulation in CI) end with the CPU's scalars to 1e-3 (relative;
/// absolute below 1).
pub fn gpu_runs_match_the_cpu<R: Recipe>(cfg: &R::Config, name: &str) {
    let three_steps_on = |device: &str| {
        let dir = fresh(&format!("{name}-{device}"));
        let mut r = request(cfg, &dir, 3);
        r.how.device = device.into();
        // The step's scalars are compared; evaluations (FID, held-out passes) only cost emulation time.
        r.run.eval_every = Some(0);
        go::<R>(&r).unwrap().last
    };
    let cpu = three_steps_on("cpu");
    let devices = [("wgpu", crate::gpu_parity::wgpu().is_some()), ("cuda", crate::gpu_parity::cuda().is_some())];
    for (device, _) in devices.iter().filter(|(_, present)| *present) {
        for ((stat, a), (_, b)) in cpu.iter().zip(&three_steps_on(device)) {
            assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{name} on {device}, {stat}: {b} vs cpu {a}");
        }
    }
}

fn go<R: Recipe>(req: &TrainRequest<R::Config>) -> kiln::train::Result<kiln::train::Summary> {
    train::<R>(req, &AtomicBool::new(false))
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// metrics.csv without its time column.
fn metrics_without_time(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
}

/// Every file of a folder with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(snapshot(&p)) } else { out.push((p.clone(), bytes(&p))) }
    }
    out.sort();
    out
}

pub mod suite {
    use super::*;

    /// 2 steps, then --resume --steps 4 ≡ 4 steps: checkpoint file, final
    /// grid, pictures, eval.json and every metric bit for bit; seconds keep counting.
    pub fn resume_is_bit_identical<R: Recipe>(cfg: &R::Config, name: &str) {
        let full = fresh(&format!("{name}-full"));
        let s = go::<R>(&request(cfg, &full, 4)).unwrap();
        assert_eq!((s.steps_done, s.step), (4, 4));
        for f in [
            "config.json",
            "metrics.csv",
            "eval.json",
            "checkpoint.safetensors",
            "samples/final.png",
            "samples/step-000002.png",
        ] {
            assert!(full.join(f).exists(), "missing {f}");
        }
        for p in R::plots() {
            assert!(full.join(format!("{}.png", p.name)).exists(), "missing plot {}", p.name);
        }
        let part = fresh(&format!("{name}-part"));
        go::<R>(&request(cfg, &part, 2)).unwrap();
        let r = go::<R>(&resume(request(cfg, &part, 4), &part, &["steps"])).unwrap();
        assert_eq!((r.steps_done, r.step), (2, 4));
        assert!(bytes(&full.join("checkpoint.safetensors")) == bytes(&part.join("checkpoint.safetensors")));
        assert!(bytes(&full.join("samples/final.png")) == bytes(&part.join("samples/final.png")));
        assert_eq!(metrics_without_time(&full), metrics_without_time(&part));
        assert_eq!(bytes(&full.join("config.json")), bytes(&part.join("config.json")));
        assert_eq!(bytes(&full.join("eval.json")), bytes(&part.join("eval.json")));
        let pictures = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let rel = |(p, b): (PathBuf, Vec<u8>)| (p.strip_prefix(dir).unwrap().to_path_buf(), b);
            snapshot(&dir.join("samples")).into_iter().map(rel).collect()
        };
        let (a, b) = (pictures(&full), pictures(&part));
        assert_eq!(a.iter().map(|p| &p.0).collect::<Vec<_>>(), b.iter().map(|p| &p.0).collect::<Vec<_>>());
        assert!(a == b, "a picture differs after resume");
        let secs: Vec<f64> = std::fs::read_to_string(part.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.rsplit_once(',').unwrap().1.parse().unwrap())
            .collect();
        assert!(secs.windows(2).all(|w| w[1] >= w[0]), "seconds restart after resume: {secs:?}");
    }

    /// A stop request (Ctrl-C, SIGTERM) ends the run after one step with a
    /// checkpoint; --resume without --steps goes on to the run's own target
    /// and ends where an uninterrupted run does.
    pub fn stop_checkpoints_and_resumes_to_its_own_target<R: Recipe>(cfg: &R::Config, name: &str) {
        let dir = fresh(&format!("{name}-stop"));
        let s = train::<R>(&request(cfg, &dir, 5), &AtomicBool::new(true)).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.steps_done, 1);
        let (_, _, step) = load_run::<R>(&dir, Device::Cpu).unwrap();
        assert_eq!(step, 1);
        let r = go::<R>(&resume(request(cfg, &dir, 999), &dir, &[])).unwrap();
        assert_eq!((r.steps_done, r.step), (4, 5), "resume keeps the run's own --steps");
        let full = fresh(&format!("{name}-stop-full"));
        go::<R>(&request(cfg, &full, 5)).unwrap();
        assert!(bytes(&full.join("checkpoint.safetensors")) == bytes(&dir.join("checkpoint.safetensors")));
    }

    /// A non-finite loss stops the run naming the step and the checkpoint
    /// only if one exists; the checkpoint left is finite and resumable.
    pub fn non_finite_loss_stops<R: Recipe>(cfg: &R::Config, exploding: &R::Config, name: &str) {
        let dir = fresh(&format!("{name}-nan-new"));
        let mut req = request(exploding, &dir, 30);
        req.run.checkpoint_every = 0;
        let e = go::<R>(&req).unwrap_err().to_string();
        assert!(e.starts_with("step ") && e.contains("no checkpoint had been written"), "{e}");
        assert!(!dir.join("checkpoint.safetensors").exists());

        let dir = fresh(&format!("{name}-nan-resume"));
        go::<R>(&request(cfg, &dir, 2)).unwrap();
        // Edit the run's config by hand, as a user might.
        let path = dir.join("config.json");
        let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        file["config"] = serde_json::to_value(exploding).unwrap();
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let before = bytes(&dir.join("checkpoint.safetensors"));
        let e = go::<R>(&resume(request(cfg, &dir, 30), &dir, &["steps"])).unwrap_err().to_string();
        assert!(e.contains("training stopped, the last good checkpoint is"), "{e}");
        assert!(e.contains("checkpoint.safetensors (step 2)"), "{e}");
        assert!(before == bytes(&dir.join("checkpoint.safetensors")), "the good checkpoint was replaced");
        assert_eq!(load_run::<R>(&dir, Device::Cpu).unwrap().2, 2);
    }

    /// --out on a folder with files is refused unless --overwrite, which
    /// replaces only kiln's outputs.
    pub fn refuses_a_non_empty_out<R: Recipe>(cfg: &R::Config, name: &str) {
        let dir = fresh(&format!("{name}-out"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = go::<R>(&request(cfg, &dir, 1)).unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains("--overwrite"), "{e}");
        assert_eq!(snapshot(&dir).len(), 1, "a refused command wrote into the folder");
        // An earlier run there: refused too, pointing at --resume.
        std::fs::remove_file(dir.join("notes.txt")).unwrap();
        go::<R>(&request(cfg, &dir, 2)).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = go::<R>(&request(cfg, &dir, 1)).unwrap_err().to_string();
        assert!(e.contains("holds a run") && e.contains("--resume"), "{e}");
        let mut req = request(cfg, &dir, 1);
        req.how.overwrite = true;
        go::<R>(&req).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
        assert!(!dir.join("samples/step-000002.png").exists(), "old samples were mixed with the new run's");
        assert_eq!(std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count(), 2);
    }

    /// A command that fails its checks leaves an existing run byte for
    /// byte as it was, and creates no folder of its own.
    pub fn failing_commands_leave_runs_untouched<R: Recipe>(cfg: &R::Config, name: &str) {
        let dir = fresh(&format!("{name}-untouched"));
        go::<R>(&request(cfg, &dir, 2)).unwrap();
        let before = snapshot(&dir);
        let base = || request(cfg, &dir, 2);
        let mut bad_batch = base();
        bad_batch.run.batch = Some(16);
        let mut bad_seed = base();
        bad_seed.run.seed = 6;
        let mut shorter = base();
        shorter.run.steps = Some(1);
        let mut overwrite = base();
        overwrite.how.overwrite = true;
        for (req, given, flag) in [
            (bad_batch, vec!["batch"], "--batch"),
            (bad_seed, vec!["seed"], "--seed"),
            (shorter, vec!["steps"], "--steps"),
            (overwrite, vec![], "--overwrite"),
            (base(), vec![], "--out"),
        ] {
            let mut req = resume(req, &dir, &given);
            if flag == "--out" {
                req.how.out = Some(dir.join("elsewhere"));
            }
            let e = go::<R>(&req).unwrap_err().to_string();
            assert!(e.starts_with(flag), "{flag}: {e}");
        }
        let e = go::<R>(&resume(base(), &dir.join("nothing-here"), &[])).unwrap_err().to_string();
        assert!(e.contains("nothing-here/config.json"), "{e}");
        assert!(before == snapshot(&dir), "a failed command changed the run");
        let new = fresh(&format!("{name}-never-made"));
        let mut req = request(cfg, &new, 2);
        req.run.batch = Some(20_000);
        let e = go::<R>(&req).unwrap_err().to_string();
        assert!(e.starts_with("--batch 20000"), "{e}");
        assert!(!new.exists(), "a failed command left a folder");
    }
}

macro_rules! recipe_suite {
    ($module:ident, $recipe:ty, $tiny:expr, $exploding:expr) => {
        mod $module {
            use super::*;
            #[test]
            fn resume_is_bit_identical() {
                suite::resume_is_bit_identical::<$recipe>(&$tiny, stringify!($module));
            }
            #[test]
            fn stop_checkpoints_and_resumes_to_its_own_target() {
                suite::stop_checkpoints_and_resumes_to_its_own_target::<$recipe>(&$tiny, stringify!($module));
            }
            #[test]
            fn non_finite_loss_stops() {
                suite::non_finite_loss_stops::<$recipe>(&$tiny, &$exploding, stringify!($module));
            }
            #[test]
            fn refuses_a_non_empty_out() {
                suite::refuses_a_non_empty_out::<$recipe>(&$tiny, stringify!($module));
            }
            #[test]
            fn failing_commands_leave_runs_untouched() {
                suite::failing_commands_leave_runs_untouched::<$recipe>(&$tiny, stringify!($module));
            }
        }
    };
}

pub fn tiny_dcgan() -> DcganConfig {
    DcganConfig { image_size: 16, ngf: 4, ndf: 4, ..Default::default() }
}

// WGAN-GP draws interpolation weights and steps G every other D step: resume must keep both in step.
recipe_suite!(
    wgan_gp_suite,
    Dcgan,
    crate::gan_losses::wgan_gp(),
    DcganConfig { lr: 1e30, ..crate::gan_losses::wgan_gp() }
);
recipe_suite!(cgan_suite, Cgan, tiny_dcgan(), DcganConfig { lr: 1e30, ..tiny_dcgan() });
recipe_suite!(vae_suite, Vae, crate::vae::tiny_vae(), VaeConfig { lr: 1e30, ..crate::vae::tiny_vae() });
// Dropout masks, timesteps, noise and label dropout are drawn; the EMA copy is checkpointed.
recipe_suite!(
    ddpm_suite,
    Ddpm,
    DdpmConfig { conditional: true, ..crate::diffusion::tiny_ddpm() },
    DdpmConfig { lr: 1e30, warmup: 0, ..crate::diffusion::tiny_ddpm() }
);

// Adam moves every weight by about lr a step: at 1e30 the activations overflow.
// Dequantisation noise is drawn; actnorm's initialisation flag is checkpointed.
recipe_suite!(
    glow_suite,
    Glow,
    crate::flow::tiny_glow(),
    GlowConfig { lr: 1e30, warmup: 0, ..crate::flow::tiny_glow() }
);
recipe_suite!(
    realnvp_suite,
    RealNvp,
    crate::flow::tiny_realnvp(),
    RealNvpConfig { lr: 1e30, warmup: 0, ..crate::flow::tiny_realnvp() }
);
recipe_suite!(dcgan_suite, Dcgan, tiny_dcgan(), DcganConfig { lr: 1e30, ..tiny_dcgan() });
// Spectral norm's u and v buffers, the EMA copy of G and self-attention's γ are checkpointed.
recipe_suite!(
    sn_sa_ema_suite,
    Dcgan,
    crate::gan_losses::sn_sa_ema(),
    DcganConfig { lr: 1e30, ..crate::gan_losses::sn_sa_ema() }
);
// The toy's tanh saturates instead of overflowing: its f32 loss is scaled past f32::MAX.
recipe_suite!(toy_suite, Toy, ToyConfig::default(), ToyConfig { loss_scale: 1e39, ..Default::default() });

/// A denoising autoencoder on 16×16 digits with dropout: noise from the
/// loop's generator, masks from its store's. `poison_at` writes inf into a
/// buffer the loss never reads, to test the loop's parameter check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyConfig {
    pub hidden: usize,
    pub lr: f64,
    pub dropout: f64,
    pub loss_scale: f64,
    pub poison_at: Option<usize>,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig { hidden: 16, lr: 1e-3, dropout: 0.5, loss_scale: 1.0, poison_at: None }
    }
}

pub struct Toy {
    cfg: ToyConfig,
    store: VarStore,
    enc: Linear,
    dec: Linear,
    drop: Dropout,
    opt: Adam,
    marker: Tensor,
    steps: usize,
}

const SIDE: usize = 16;

impl Recipe for Toy {
    const NAME: &'static str = "toy";
    const DEFAULT_STEPS: usize = 10;
    const DEFAULT_BATCH: usize = 8;
    type Config = ToyConfig;

    fn check(c: &ToyConfig) -> kiln::train::Result<()> {
        if c.hidden == 0 {
            return Err("--hidden 0: must be at least 1".into());
        }
        Ok(())
    }
    fn image_size(_: &ToyConfig) -> usize {
        SIDE
    }
    fn build(c: &ToyConfig, setup: &Setup) -> kiln::train::Result<Self> {
        let store = VarStore::new(setup.device, DType::F32, setup.seed);
        let root = store.root();
        let d = setup.channels * SIDE * SIDE;
        let enc = Linear::new(&root.sub("enc"), d, c.hidden, true)?;
        let dec = Linear::new(&root.sub("dec"), c.hidden, d, true)?;
        let drop = Dropout::new(&root.sub("drop"), c.dropout);
        let marker = root.buffer("marker", &[1], 0.0)?;
        let opt = Adam::new(store.trainable(), AdamConfig { lr: c.lr, ..Default::default() })?;
        Ok(Toy { cfg: c.clone(), store, enc, dec, drop, opt, marker, steps: 0 })
    }
    fn stat_names() -> &'static [&'static str] {
        &["loss"]
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> kiln::train::Result<Vec<f64>> {
        let s = batch.images.shape().to_vec();
        let x = batch.images.reshape(&[s[0], s[1] * s[2] * s[3]])?;
        let noise = Tensor::randn(x.shape(), 0.0, 0.1, DType::F32, x.device(), rng)?;
        let h = self.enc.forward(&x.add(&noise)?, true)?.relu()?;
        let y = self.dec.forward(&self.drop.forward(&h, true)?, true)?.tanh()?;
        let loss = mse_loss(&y, &x, Reduction::Mean)?.mul_scalar(self.cfg.loss_scale)?;
        self.opt.step(&loss.backward()?)?;
        self.steps += 1;
        if self.cfg.poison_at == Some(self.steps) {
            self.marker.assign(&Tensor::full(f64::INFINITY, &[1], DType::F32, Device::Cpu)?)?;
        }
        Ok(vec![loss.to_scalar()?])
    }
    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("toy", &self.store)]
    }
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Adam)> {
        vec![("opt", &mut self.opt)]
    }
    fn sample(&self, n: usize, rng: &mut Rng) -> kiln::train::Result<Tensor> {
        let _g = kiln::tensor::no_grad();
        let z = Tensor::randn(&[n, self.cfg.hidden], 0.0, 1.0, DType::F32, self.store.device(), rng)?.relu()?;
        let c = self.dec.forward(&z, false)?.tanh()?;
        let ch = c.shape()[1] / (SIDE * SIDE);
        Ok(c.reshape(&[n, ch, SIDE, SIDE])?)
    }
    fn plots() -> &'static [Plot] {
        &[Plot { name: "loss", title: "Toy loss", y_label: "MSE", x: "step", series: &["loss"], log_y: true }]
    }
    fn eval_names() -> &'static [&'static str] {
        &["held_out_mse"]
    }
    /// Reconstruction error of the held-out images, with noise from `rng`.
    fn evaluate(&self, held_out: &HeldOut, rng: &mut Rng, _full: bool) -> kiln::train::Result<Vec<Option<f64>>> {
        let _g = kiln::tensor::no_grad();
        let (mut total, mut n) = (0.0, 0);
        for batch in held_out.batches(300) {
            let x = batch?.images;
            let s = x.shape().to_vec();
            let x = x.reshape(&[s[0], s[1] * s[2] * s[3]])?;
            let noise = Tensor::randn(x.shape(), 0.0, 0.1, DType::F32, x.device(), rng)?;
            let y = self.dec.forward(&self.enc.forward(&x.add(&noise)?, false)?.relu()?, false)?.tanh()?;
            total += mse_loss(&y, &x, Reduction::Sum)?.to_scalar()?;
            n += x.numel();
        }
        Ok(vec![Some(total / n as f64)])
    }
}

#[test]
fn a_parameter_that_turns_non_finite_stops_the_run_though_the_loss_is_finite() {
    let dir = fresh("poison");
    let cfg = ToyConfig { poison_at: Some(3), ..Default::default() };
    let e = go::<Toy>(&request(&cfg, &dir, 6)).unwrap_err().to_string();
    assert!(e.starts_with("step 3: toy.marker is not finite (the losses were)"), "{e}");
    assert!(e.contains("(step 2)"), "{e}");
    assert_eq!(load_run::<Toy>(&dir, Device::Cpu).unwrap().2, 2);
}

#[test]
fn default_run_folders_never_collide() {
    let parent = crate::common::scratch_dir("train-default-dirs");
    let dirs: Vec<PathBuf> = (0..3).map(|_| claim_default(&parent, "toy").unwrap()).collect();
    assert!(dirs[0] != dirs[1] && dirs[1] != dirs[2] && dirs[0] != dirs[2], "{dirs:?}");
    assert!(dirs.iter().all(|d| d.is_dir()));
}
