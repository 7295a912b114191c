//! The GAN objectives and penalties (kiln-gan's loss.rs) against their
//! formulas, WGAN-GP's penalty and R1 on a linear critic whose input
//! gradient is known in closed form (value and, through double backward,
//! the gradient w.r.t. the critic's weights), and a short run of each
//! variant through the run loop, on the CPU and on the GPU backends.

use std::sync::atomic::AtomicBool;

use std::collections::HashMap;

use kiln::gan::loss::{d_loss, g_loss, gradient_penalty, r1_penalty};
use kiln::gan::{DNorm, Dcgan, DcganConfig, GanLoss};
use kiln::tensor::{Conv2dParams, ConvTranspose2dParams};
use kiln::train::train;
use kiln::{Tensor, Var};
use serde_json::Value;

use crate::common::t64;
use crate::train::{fresh, request, tiny_dcgan};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[test]
fn each_loss_is_its_formula() {
    let (r, f) = ([1.5, -0.5, 0.25], [-2.0, 0.75, 0.0]);
    let (real, fake) = (t64(&r, &[3]), t64(&f, &[3]));
    let mean = |v: &[f64], g: &dyn Fn(f64) -> f64| v.iter().map(|&x| g(x)).sum::<f64>() / v.len() as f64;
    let d = |k| d_loss(k, &real, &fake, 0.9).unwrap().to_scalar().unwrap();
    let g = |k| g_loss(k, &fake).unwrap().to_scalar().unwrap();
    // BCE with logits, real target 0.9: −t log σ(x) − (1 − t) log(1 − σ(x)) = t·sp(−x) + (1 − t)·sp(x).
    close(d(GanLoss::Bce), mean(&r, &|x| 0.9 * softplus(-x) + 0.1 * softplus(x)) + mean(&f, &|x| softplus(x)));
    close(g(GanLoss::Bce), mean(&f, &|x| softplus(-x)));
    close(d(GanLoss::Lsgan), 0.5 * mean(&r, &|x| (x - 1.0).powi(2)) + 0.5 * mean(&f, &|x| x * x));
    close(g(GanLoss::Lsgan), 0.5 * mean(&f, &|x| (x - 1.0).powi(2)));
    close(d(GanLoss::Hinge), mean(&r, &|x| (1.0 - x).max(0.0)) + mean(&f, &|x| (1.0 + x).max(0.0)));
    close(g(GanLoss::Hinge), -mean(&f, &|x| x));
    close(d(GanLoss::WganGp), mean(&f, &|x| x) - mean(&r, &|x| x));
    close(g(GanLoss::WganGp), -mean(&f, &|x| x));
}

#[test]
fn penalties_on_a_linear_critic_match_their_closed_forms() {
    // D(x) = Σ w ⊙ x per image: ∇ₓD = w for every image and every α, so
    // GP = λ (‖w‖ − 1)² with the norm over channels and space together,
    // d GP / dw = 2λ (‖w‖ − 1) w / ‖w‖; R1 = γ/2 ‖w‖², d R1 / dw = γ w.
    let wv = [0.3, -0.4, 0.5, 0.1, 0.2, -0.6, 0.7, 0.05];
    let w = Var::new(&t64(&wv, &[1, 2, 2, 2])).unwrap();
    let d = |x: &Tensor| x.mul(&w)?.sum(&[1, 2, 3], false);
    let real = t64(&(0..24).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>(), &[3, 2, 2, 2]);
    let fake = t64(&(0..24).map(|i| (i as f64 * 0.91).cos()).collect::<Vec<_>>(), &[3, 2, 2, 2]);
    let alpha = t64(&[0.1, 0.5, 0.9], &[3, 1, 1, 1]);
    let norm = wv.iter().map(|v| v * v).sum::<f64>().sqrt();
    let gp = gradient_penalty(&d, &real, &fake, &alpha, 10.0).unwrap();
    assert!((gp.to_scalar().unwrap() - 10.0 * (norm - 1.0).powi(2)).abs() < 1e-10);
    let grad = gp.backward().unwrap().get(&w).unwrap().to_vec_f64();
    for (g, v) in grad.iter().zip(wv) {
        assert!((g - 20.0 * (norm - 1.0) * v / norm).abs() < 1e-10, "{grad:?}");
    }
    let r1 = r1_penalty(&d, &real, 4.0).unwrap();
    assert!((r1.to_scalar().unwrap() - 2.0 * norm * norm).abs() < 1e-12);
    let grad = r1.backward().unwrap().get(&w).unwrap().to_vec_f64();
    for (g, v) in grad.iter().zip(wv) {
        assert!((g - 4.0 * v).abs() < 1e-12, "{grad:?}");
    }
}

#[test]
fn the_gradient_penalty_is_taken_at_the_interpolates() {
    // D(x) = Σ w ⊙ x² per image: ∇ₓD(x̂) = 2 w ⊙ x̂, so the penalty depends on
    // x̂ = x + α(x̃ − x) image by image; worked out here on the host.
    let wv: Vec<f64> = (0..8).map(|i| 0.3 + 0.1 * i as f64).collect();
    let w = Var::new(&t64(&wv, &[1, 2, 2, 2])).unwrap();
    let d = |x: &Tensor| x.sqr()?.mul(&w)?.sum(&[1, 2, 3], false);
    let r: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
    let f: Vec<f64> = (0..16).map(|i| (i as f64 * 0.91).cos()).collect();
    let a = [0.2, 0.7];
    let gp = gradient_penalty(&d, &t64(&r, &[2, 2, 2, 2]), &t64(&f, &[2, 2, 2, 2]), &t64(&a, &[2, 1, 1, 1]), 10.0);
    let want: f64 = (0..2)
        .map(|i| {
            let norm = (0..8)
                .map(|j| {
                    let x_hat = r[i * 8 + j] + a[i] * (f[i * 8 + j] - r[i * 8 + j]);
                    (2.0 * wv[j] * x_hat).powi(2)
                })
                .sum::<f64>()
                .sqrt();
            10.0 * (norm - 1.0).powi(2) / 2.0
        })
        .sum();
    assert!((gp.unwrap().to_scalar().unwrap() - want).abs() < 1e-9 * want.max(1.0));
}

fn variants() -> Vec<(&'static str, DcganConfig)> {
    let t = tiny_dcgan();
    vec![
        ("lsgan", DcganConfig { loss: GanLoss::Lsgan, ..t.clone() }),
        ("hinge", DcganConfig { loss: GanLoss::Hinge, d_norm: DNorm::None, ..t.clone() }),
        ("wgan-gp", wgan_gp()),
        ("bce-r1", DcganConfig { r1: 10.0, ..t.clone() }),
        ("hinge-spectral-norm", sn_sa_ema()),
        ("ttur-ema", DcganConfig { lr_d: 4e-4, lr_g: 1e-4, ema: 0.9, ..t }),
    ]
}

/// Hinge loss, spectral norm in D, self-attention at 8×8, EMA of G, TTUR.
pub fn sn_sa_ema() -> DcganConfig {
    let t = tiny_dcgan();
    DcganConfig { loss: GanLoss::Hinge, spectral_norm: true, self_attention: 8, ema: 0.9, lr_d: 4e-4, ..t }
}

pub fn wgan_gp() -> DcganConfig {
    DcganConfig { loss: GanLoss::WganGp, n_critic: 2, lr: 1e-4, beta1: 0.0, beta2: 0.9, ..tiny_dcgan() }
}

#[test]
fn every_variant_trains_and_writes_its_files() {
    for (name, cfg) in variants() {
        let dir = fresh(&format!("gan-{name}"));
        let s = train::<Dcgan>(&request(&cfg, &dir, 4), &AtomicBool::new(false)).unwrap();
        assert!(s.last.iter().all(|(_, v)| v.is_finite()), "{name}: {:?}", s.last);
        for f in ["samples/final.png", "eval.json", "loss.png", "checkpoint.safetensors"] {
            assert!(dir.join(f).exists(), "{name}: missing {f}");
        }
    }
    // n_critic 2: G stepped on D's 2nd and 4th steps only.
    let dir = fresh("gan-critic-steps");
    train::<Dcgan>(&request(&wgan_gp(), &dir, 4), &AtomicBool::new(false)).unwrap();
    let ck = kiln::nn::load_checkpoint(&dir.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.metadata.get("opt_g_step").map(String::as_str), Some("2"));
    assert_eq!(ck.metadata.get("opt_d_step").map(String::as_str), Some("4"));
    // 5 critic steps by default for wgan-gp; layer norm in its critic.
    let auto = DcganConfig { loss: GanLoss::WganGp, ..tiny_dcgan() };
    assert_eq!((auto.critic_steps(), auto.d_norm()), (5, DNorm::Layer));
}

#[test]
fn wgan_gp_and_r1_on_wgpu_and_cuda_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<Dcgan>(&wgan_gp(), "gan-wgan-gp");
    crate::train::gpu_runs_match_the_cpu::<Dcgan>(&DcganConfig { r1: 10.0, ..tiny_dcgan() }, "gan-r1");
}

/// Spectral norm's power iteration, self-attention and the EMA on the GPU backends.
#[test]
fn spectral_norm_self_attention_ema_on_wgpu_and_cuda_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<Dcgan>(&sn_sa_ema(), "gan-sn-sa-ema");
}

/// --spectral-norm names D's weights as torch's spectral_norm does (and
/// drops batch norm under auto); --self-attention adds the block to G and D
/// with γ = 0, so it starts as the identity; --ema draws samples from the
/// average, which starts equal to G; TTUR sets each optimizer's rate.
#[test]
fn spectral_norm_self_attention_ema_and_ttur_build_as_asked() {
    let c = sn_sa_ema();
    assert_eq!(c.d_norm(), DNorm::None);
    let gan = Dcgan::new(c.clone(), kiln::Device::Cpu, 3).unwrap();
    let d_names: Vec<String> = gan.d_store.named_tensors().into_iter().map(|(n, _)| n).collect();
    for want in ["main.0.weight_orig", "main.0.weight_u", "main.0.weight_v", "main.2.gamma", "main.2.f.weight"] {
        assert!(d_names.iter().any(|n| n == want), "D has no {want}: {d_names:?}");
    }
    assert!(!d_names.iter().any(|n| n.ends_with("running_mean")), "no batch norm in D: {d_names:?}");
    let g_names: Vec<String> = gan.g_store.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert!(g_names.iter().any(|n| n == "main.6.gamma"), "G's block after its 8×8 stage: {g_names:?}");
    let gamma = gan.g_store.named_tensors().into_iter().find(|(n, _)| n == "main.6.gamma").unwrap().1;
    assert_eq!(gamma.to_vec_f64(), vec![0.0]);
    assert_eq!((gan.opt_d.config.lr, gan.opt_g.config.lr), (4e-4, 2e-4));
    let mut rng = kiln::tensor::Rng::new(1);
    let noise = gan.noise(3, &mut rng).unwrap();
    use kiln::nn::Module;
    let _g = kiln::tensor::no_grad();
    let direct = gan.g.forward(&noise, false).unwrap();
    assert_eq!(gan.sample(&noise).unwrap().to_vec_f64(), direct.to_vec_f64(), "the average starts at G");
}

/// The SAGAN block: the identity at γ = 0; with γ ≠ 0 its gradients (f64,
/// through the fused attention) against finite differences.
#[test]
fn self_attention_block_starts_as_identity_and_has_correct_gradients() {
    use kiln::gan::sagan::SelfAttention;
    use kiln::nn::{Module, VarStore};
    let vs = VarStore::new(kiln::Device::Cpu, kiln::DType::F64, 5);
    let block = SelfAttention::new(&vs.root(), 16).unwrap();
    let x = kiln::tensor::testing::strategies::randn(&[2, 16, 3, 5], 9);
    assert_eq!(block.forward(&x, true).unwrap().to_vec_f64(), x.to_vec_f64());
    block.gamma.set(&t64(&[0.7], &[1])).unwrap();
    crate::common::check(|t| block.forward(&t[0], true)?.sqr(), &[x]).unwrap();
}

/// PyTorch's spectral_norm (fixed weight_orig, u, v; one power iteration in
/// training, none in eval; dim 1 for a transposed conv), a gradient penalty
/// taken through a spectral-normed layer (the second backward), and
/// WGAN-GP's penalty on the 16×16 DCGAN critic with LayerNorm, all against
/// scripts/torch_gan_fixture.py.
#[test]
fn spectral_norm_and_gradient_penalty_match_pytorch() {
    assert_eq!(crate::torch_reference::check_file_with("gan", run_gan_case), 8);
}

fn spectral(x: &HashMap<String, Tensor>, dim: usize) -> kiln::Result<kiln::nn::SpectralNorm> {
    let w = &x["weight_orig"];
    let vs = kiln::nn::VarStore::new(kiln::Device::Cpu, kiln::DType::F64, 0);
    let sn = kiln::nn::SpectralNorm::new(&vs.root(), w.shape(), kiln::nn::Init::Const(0.0), dim)?;
    sn.weight_u.assign(&x["u"])?;
    sn.weight_v.assign(&x["v"])?;
    Ok(sn)
}

fn run_gan_case(op: &str, p: &Value, x: &HashMap<String, Tensor>) -> kiln::Result<Vec<(String, Tensor)>> {
    use crate::torch_reference::pair;
    match op {
        "spectral_norm" => {
            let kind = p["kind"].as_str().unwrap();
            let sn = spectral(x, if kind == "conv_transpose2d" { 1 } else { 0 })?;
            // The fixture's weight (a Var of the harness, whose gradient is checked).
            let w = sn.normalize_weight(&x["weight_orig"], p["train"].as_bool().unwrap())?;
            let bias = x.get("bias");
            let y = match kind {
                "conv2d" => {
                    let params =
                        Conv2dParams { stride: pair(&p["stride"]), padding: pair(&p["padding"]), ..Default::default() };
                    x["x"].conv2d(&w, bias, params)?
                }
                "conv_transpose2d" => {
                    let params = ConvTranspose2dParams {
                        stride: pair(&p["stride"]),
                        padding: pair(&p["padding"]),
                        ..Default::default()
                    };
                    x["x"].conv_transpose2d(&w, bias, params)?
                }
                _ => {
                    let y = x["x"].matmul(&w.t()?)?;
                    if let Some(b) = bias { y.add(b)? } else { y }
                }
            };
            Ok(vec![
                ("y".into(), y),
                ("weight".into(), w),
                ("u_next".into(), sn.weight_u.copy()?),
                ("v_next".into(), sn.weight_v.copy()?),
            ])
        }
        "sn_gradient_penalty" => {
            let sn = spectral(x, 0)?;
            let params = Conv2dParams { padding: [1, 1], ..Default::default() };
            let w = &x["weight_orig"];
            let d = |img: &Tensor| {
                img.conv2d(&sn.normalize_weight(w, true)?, None, params)?.leaky_relu(0.2)?.sum(&[1, 2, 3], false)
            };
            // x̂ = x: α = 0 with a zero "fake".
            let img = &x["x"];
            let alpha = Tensor::zeros(&[img.shape()[0], 1, 1, 1], kiln::DType::F64, kiln::Device::Cpu)?;
            let pen = gradient_penalty(&d, img, &img.zeros_like()?, &alpha, 1.0)?;
            Ok(vec![("y".into(), pen), ("u_next".into(), sn.weight_u.copy()?)])
        }
        "wgan_gp_penalty" => {
            // The 16×16 DCGAN critic (kiln's discriminator() with LayerNorm),
            // written out on the fixture's weights, whose gradients are checked.
            let s2 = Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
            let ndf = p["ndf"].as_u64().unwrap() as usize;
            let d = |img: &Tensor| -> kiln::Result<Tensor> {
                let h = img.conv2d(&x["main.0.weight"], None, s2)?.leaky_relu(0.2)?;
                let h = h.conv2d(&x["main.2.weight"], None, s2)?;
                let h = h.layer_norm(&[2 * ndf, 4, 4], Some(&x["main.3.weight"]), Some(&x["main.3.bias"]), 1e-5)?;
                let out = h.leaky_relu(0.2)?.conv2d(&x["main.5.weight"], None, Conv2dParams::default())?;
                out.reshape(&[out.numel()])
            };
            let pen = gradient_penalty(&d, &x["real"], &x["fake"], &x["alpha"], p["lambda"].as_f64().unwrap())?;
            Ok(vec![("y".into(), pen)])
        }
        other => panic!("gan fixture op {other} has no runner"),
    }
}
