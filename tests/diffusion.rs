//! kiln-diffusion's defining identities: the schedules against their
//! closed forms and PyTorch, DDIM's spacings, the DDIM step with η = 1 and
//! S = T against the ancestral step, determinism, q(x_t | x_0)'s
//! statistics, the U-Net against PyTorch for fixed weights, a network that
//! hears t and the label, the EMA, and the same run on each GPU backend.
//! The run loop's suite (resume with EMA and dropout, NaN stop, ...) runs
//! for DDPM in train.rs.

use kiln::diffusion::sampler::{SamplerPlan, ddim_step, ddpm_step, run_sampler, split_prediction};
use kiln::diffusion::{
    BetaSchedule, Ddpm, DdpmConfig, Prediction, SamplerKind, Schedule, Spacing, UNet, UNetShape, Variance, timesteps,
};
use kiln::nn::{BatchNorm2d, Ema, Module, VarStore};
use kiln::tensor::Rng;
use kiln::{DType, Device, Tensor};
use serde_json::Value;

use crate::common::t64;

pub fn tiny_ddpm() -> DdpmConfig {
    DdpmConfig {
        base: 8,
        mults: vec![1, 2],
        res_blocks: 1,
        attention: vec![4],
        groups: 4,
        timesteps: 50,
        sample_steps: 3,
        image_size: 8,
        // Dropout on, so resume must restore the masks' generator.
        dropout: 0.1,
        ..Default::default()
    }
}

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch/diffusion.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn schedules_match_their_closed_forms_and_pytorch() {
    let doc = fixture();
    for (kind, key) in [(BetaSchedule::Linear, "linear"), (BetaSchedule::Cosine, "cosine")] {
        let s = Schedule::new(kind, 1000).unwrap();
        let r = &doc[key];
        let (betas, abar) = (floats(&r["betas"]), floats(&r["alphas_cumprod"]));
        let (var, c1, c2) =
            (floats(&r["posterior_variance"]), floats(&r["posterior_mean_coef1"]), floats(&r["posterior_mean_coef2"]));
        for t in 0..1000 {
            assert!(close(s.betas[t], betas[t], 1e-12), "{key} β_{t}");
            assert!(close(s.alphas_cumprod[t], abar[t], 1e-12), "{key} ᾱ_{t}");
            assert!(close(s.posterior_variance(t), var[t], 1e-10), "{key} β̃_{t}");
            let (a, b) = s.posterior_mean_coefs(t);
            assert!(close(a, c1[t], 1e-10) && close(b, c2[t], 1e-10), "{key} posterior mean at {t}");
        }
    }
    // Ho et al.'s endpoints, and ᾱ = Π(1 − β) by hand.
    let lin = Schedule::new(BetaSchedule::Linear, 1000).unwrap();
    assert_eq!((lin.betas[0], lin.betas[999]), (1e-4, 0.02));
    let prod: f64 = lin.betas[..=500].iter().map(|b| 1.0 - b).product();
    assert!(close(lin.alpha_bar(Some(500)), prod, 1e-14));
    assert_eq!(lin.alpha_bar(None), 1.0);
    // Cosine: ᾱ_t = f(t+1)/f(0) before the 0.999 cap bites, and β ≤ 0.999.
    let cos = Schedule::new(BetaSchedule::Cosine, 1000).unwrap();
    let f = |t: f64| ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    assert!(close(cos.alpha_bar(Some(299)), f(300.0) / f(0.0), 1e-12));
    assert!(cos.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
}

#[test]
fn the_posterior_mean_is_the_eps_form_and_beta_tilde_is_below_beta() {
    // μ̃(x_t, x_0) with x_0 from ε equals (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t.
    let s = Schedule::new(BetaSchedule::Linear, 1000).unwrap();
    for t in [1, 10, 500, 999] {
        let (x0, eps) = (0.3, -1.2);
        let abar = s.alpha_bar(Some(t));
        let xt = abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps;
        let (a, b) = s.posterior_mean_coefs(t);
        let eps_form = (xt - s.betas[t] / (1.0 - abar).sqrt() * eps) / (1.0 - s.betas[t]).sqrt();
        assert!(close(a * x0 + b * xt, eps_form, 1e-12), "t = {t}");
        assert!(s.posterior_variance(t) < s.betas[t]);
    }
    assert_eq!(s.posterior_variance(0), 0.0);
}

#[test]
fn ddim_spacings_visit_the_documented_timesteps() {
    let ts = |s, sp| timesteps(1000, s, sp).unwrap();
    // Trailing starts at T − 1; leading never reaches it.
    assert_eq!(ts(10, Spacing::Trailing), vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    assert_eq!(ts(10, Spacing::Leading), vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    assert_eq!(ts(4, Spacing::Linspace), vec![999, 666, 333, 0]);
    // DDIM's quadratic: ⌊(k √800 / (S − 1))²⌋.
    assert_eq!(ts(5, Spacing::Quadratic), vec![800, 450, 200, 50, 0]);
    for sp in [Spacing::Trailing, Spacing::Linspace, Spacing::Leading] {
        assert_eq!(ts(1000, sp), (0..1000).rev().collect::<Vec<_>>(), "{sp:?} with S = T");
    }
    for sp in [Spacing::Trailing, Spacing::Linspace, Spacing::Leading, Spacing::Quadratic] {
        let v = ts(20, sp);
        assert!(v.windows(2).all(|w| w[0] > w[1]), "{sp:?} descends without repeats");
    }
    assert!(timesteps(1000, 0, Spacing::Trailing).is_err());
    assert!(timesteps(1000, 1001, Spacing::Trailing).is_err());
    assert!(timesteps(1000, 900, Spacing::Quadratic).is_err(), "the quadratic spacing repeats steps near 0");
}

#[test]
fn ddim_with_eta_one_and_every_step_is_the_ancestral_step() {
    let s = Schedule::new(BetaSchedule::Linear, 1000).unwrap();
    let mut rng = Rng::new(3);
    let x_t = Tensor::randn(&[4, 1, 3, 3], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
    let out = Tensor::randn(&[4, 1, 3, 3], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
    let z = Tensor::randn(&[4, 1, 3, 3], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
    for t in [1, 7, 300, 999] {
        let (x0, eps) = split_prediction(&s, Prediction::Eps, &x_t, &out, t).unwrap();
        let ddim = host(&ddim_step(&s, 1.0, &x0, &eps, t, Some(t - 1), Some(&z)).unwrap());
        let ddpm = host(&ddpm_step(&s, Variance::Posterior, &x_t, &x0, t, Some(&z)).unwrap());
        for (a, b) in ddim.iter().zip(&ddpm) {
            assert!((a - b).abs() < 1e-9, "t = {t}: {a} vs {b}");
        }
    }
    // The last step lands on the clipped x̂_0 itself (the ancestral one up
    // to β_0/(1 − ᾱ_0) = 1 in floating point).
    let (x0, eps) = split_prediction(&s, Prediction::Eps, &x_t, &out, 0).unwrap();
    assert_eq!(host(&ddim_step(&s, 0.0, &x0, &eps, 0, None, None).unwrap()), host(&x0));
    let last = host(&ddpm_step(&s, Variance::Posterior, &x_t, &x0, 0, Some(&z)).unwrap());
    assert!(last.iter().zip(host(&x0)).all(|(a, b)| (a - b).abs() < 1e-12));
}

#[test]
fn v_and_eps_predictions_recover_the_same_clean_image() {
    let s = Schedule::new(BetaSchedule::Cosine, 1000).unwrap();
    let mut rng = Rng::new(9);
    let x0 = Tensor::rand(&[2, 1, 4, 4], DType::F64, Device::Cpu, &mut rng).unwrap().affine(1.6, -0.8).unwrap();
    let eps = Tensor::randn(&[2, 1, 4, 4], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
    for t in [0, 100, 900] {
        let abar = s.alpha_bar(Some(t));
        let x_t = x0.mul_scalar(abar.sqrt()).unwrap().add(&eps.mul_scalar((1.0 - abar).sqrt()).unwrap()).unwrap();
        let v = eps.mul_scalar(abar.sqrt()).unwrap().sub(&x0.mul_scalar((1.0 - abar).sqrt()).unwrap()).unwrap();
        for (pred, out) in [(Prediction::Eps, &eps), (Prediction::V, &v)] {
            let (x0_hat, eps_hat) = split_prediction(&s, pred, &x_t, out, t).unwrap();
            for (a, b) in host(&x0_hat).iter().zip(host(&x0)) {
                assert!((a - b).abs() < 1e-9, "{pred:?} x0 at t = {t}");
            }
            for (a, b) in host(&eps_hat).iter().zip(host(&eps)) {
                assert!((a - b).abs() < 1e-6, "{pred:?} eps at t = {t}");
            }
        }
    }
}

#[test]
fn samplers_are_deterministic_given_the_generator() {
    let s = Schedule::new(BetaSchedule::Linear, 100).unwrap();
    let denoise = |x: &Tensor, t: usize| x.mul_scalar(0.01 * t as f64);
    let plan = |kind, eta| SamplerPlan {
        prediction: Prediction::Eps,
        timesteps: match kind {
            SamplerKind::Ddpm => (0..100).rev().collect(),
            SamplerKind::Ddim => timesteps(100, 10, Spacing::Trailing).unwrap(),
        },
        kind,
        eta,
        variance: Variance::Posterior,
    };
    for (kind, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 0.5), (SamplerKind::Ddpm, 0.0)] {
        let go = |seed| {
            let (x, snaps) =
                run_sampler(&s, &plan(kind, eta), &[2, 1, 4, 4], Device::Cpu, &mut Rng::new(seed), &[0, 3], denoise)
                    .unwrap();
            assert_eq!(snaps.len(), 2);
            host(&x)
        };
        assert_eq!(go(1), go(1), "{kind:?} η = {eta}");
        assert_ne!(go(1), go(2), "{kind:?} η = {eta}");
    }
}

#[test]
fn q_sample_has_the_forward_process_moments() {
    let model = Ddpm::new(tiny_ddpm(), Device::Cpu, 0).unwrap();
    let n = 20_000;
    let x0 = Tensor::full(0.6, &[n, 1, 1, 1], DType::F32, Device::Cpu).unwrap();
    let eps = Tensor::randn(&[n, 1, 1, 1], 0.0, 1.0, DType::F32, Device::Cpu, &mut Rng::new(4)).unwrap();
    let t = 20;
    let x = host(&model.q_sample(&x0, &vec![t; n], &eps).unwrap());
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    let abar = model.schedule.alpha_bar(Some(t));
    // 5 standard errors.
    assert!((mean - 0.6 * abar.sqrt()).abs() < 5.0 * ((1.0 - abar) / n as f64).sqrt(), "mean {mean}");
    assert!((var - (1.0 - abar)).abs() < 5.0 * (1.0 - abar) * (2.0 / n as f64).sqrt(), "variance {var}");
}

/// A U-Net of the fixture's layout in f64 with PyTorch's weights.
fn fixture_unet(doc: &Value) -> UNet {
    let c = &doc["config"];
    let list = |k: &str| c[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let shape = UNetShape {
        channels: n("channels"),
        image_size: n("image_size"),
        base: n("base"),
        mults: list("mults"),
        res_blocks: n("res_blocks"),
        attention: list("attention"),
        groups: n("groups"),
        dropout: 0.0,
        classes: n("classes"),
    };
    let store = VarStore::new(Device::Cpu, DType::F64, 0);
    let net = UNet::new(&store.root(), &shape).unwrap();
    let params = doc["params"].as_object().unwrap();
    let ours = store.trainable();
    assert_eq!(ours.len(), params.len(), "parameter count");
    for (name, var) in ours {
        let p = params.get(&name).unwrap_or_else(|| panic!("{name} is not in the fixture"));
        let shape: Vec<usize> = p["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(var.shape(), &shape[..], "{name}");
        var.set(&t64(&floats(p), &shape)).unwrap();
    }
    net
}

#[test]
fn unet_matches_pytorch_for_fixed_weights() {
    let doc = fixture()["unet"].clone();
    let net = fixture_unet(&doc);
    let x = &doc["x"];
    let shape: Vec<usize> = x["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let t: Vec<f64> = doc["t"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let y: Vec<usize> = doc["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let out = host(&net.forward(&t64(&floats(x), &shape), &t, Some(&y), false).unwrap());
    let want = floats(&doc["out"]);
    assert_eq!(out.len(), want.len());
    for (i, (a, b)) in out.iter().zip(&want).enumerate() {
        // The time embedding goes through f32 (as the model feeds it): 1e-6 relative.
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "element {i}: {a} vs torch {b}");
    }
}

#[test]
fn the_network_hears_the_timestep_and_the_label() {
    let doc = fixture()["unet"].clone();
    let net = fixture_unet(&doc);
    let x = Tensor::randn(&[1, 1, 8, 8], 0.0, 1.0, DType::F64, Device::Cpu, &mut Rng::new(1)).unwrap();
    let at = |t: f64, y: usize| host(&net.forward(&x, &[t], Some(&[y]), false).unwrap());
    let diff = |a: Vec<f64>, b: Vec<f64>| a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(diff(at(10.0, 3), at(900.0, 3)) > 1e-3, "t changes the output");
    assert!(diff(at(10.0, 3), at(10.0, 4)) > 1e-3, "the label changes the output");
    assert!(diff(at(10.0, 3), at(10.0, 10)) > 1e-3, "the null label is a label of its own");
    assert!(net.forward(&x, &[10.0], Some(&[11]), false).is_err(), "labels past the null label are refused");
    assert!(net.forward(&x, &[10.0], None, false).is_err(), "a conditional network needs labels");
}

#[test]
fn ema_averages_weights_and_copies_buffers() {
    let make = |seed| {
        let vs = VarStore::new(Device::Cpu, DType::F64, seed);
        let bn = BatchNorm2d::new(&vs.root().sub("bn"), 2).unwrap();
        (vs, bn)
    };
    let (src, bn) = make(1);
    let (dst, _) = make(2);
    let ema = Ema::new(&src, &dst, 0.9, true).unwrap();
    // A training-mode forward moves the running statistics (buffers).
    let x = Tensor::randn(&[4, 2, 3, 3], 1.0, 2.0, DType::F64, Device::Cpu, &mut Rng::new(5)).unwrap();
    bn.forward(&x, true).unwrap();
    let w0 = host(&src.trainable()[0].1);
    let w1: Vec<f64> = w0.iter().map(|v| v + 1.0).collect();
    src.trainable()[0].1.set(&t64(&w1, &[2])).unwrap();
    // Update 0 with warm-up: d = min(0.9, 1/10) = 0.1.
    assert_eq!(ema.decay_at(0), 0.1);
    assert_eq!(ema.decay_at(1000), 0.9);
    ema.update(0).unwrap();
    let avg = host(&dst.trainable()[0].1);
    for (a, (old, new)) in avg.iter().zip(w0.iter().zip(&w1)) {
        assert!((a - (0.1 * old + 0.9 * new)).abs() < 1e-12);
    }
    let buffers = |vs: &VarStore| -> Vec<Vec<f64>> {
        let trainable: Vec<String> = vs.trainable().into_iter().map(|(n, _)| n).collect();
        vs.named_tensors().into_iter().filter(|(n, _)| !trainable.contains(n)).map(|(_, t)| host(&t)).collect()
    };
    assert_eq!(buffers(&dst), buffers(&src), "running statistics are copied, not averaged");
    let other = VarStore::new(Device::Cpu, DType::F64, 3);
    other.root().param("w", &[2], kiln::nn::Init::Const(0.0)).unwrap();
    assert!(Ema::new(&src, &other, 0.9, true).is_err(), "layouts must match");
}

#[test]
fn sampling_with_ddpm_and_ddim_gives_images_in_range() {
    for conditional in [false, true] {
        let mut cfg = DdpmConfig { conditional, ..tiny_ddpm() };
        let mut model = Ddpm::new(cfg.clone(), Device::Cpu, 0).unwrap();
        for sampler in [SamplerKind::Ddim, SamplerKind::Ddpm] {
            cfg.sampler = sampler;
            model.config = cfg.clone();
            let labels = conditional.then(|| vec![1, 2, 3]);
            let (x, _) = model.sample_with(3, labels.as_deref(), &mut Rng::new(0), &[]).unwrap();
            assert_eq!(x.shape(), &[3, 1, 8, 8]);
            assert!(host(&x).iter().all(|v| (-1.0..=1.0).contains(v)));
        }
        let wrong = (!conditional).then(|| vec![1, 2, 3]);
        assert!(model.sample_with(3, wrong.as_deref(), &mut Rng::new(0), &[]).is_err());
    }
}

/// The unconditional model only: the conditional one adds a label
/// embedding (index_select, tested on GPUs with the CGAN) and costs the
/// CUDA emulation a minute more in its guided end-of-run grids.
#[test]
fn gpu_runs_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<Ddpm>(&tiny_ddpm(), "ddpm");
}
