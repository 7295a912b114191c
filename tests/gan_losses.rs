//! The GAN objectives and penalties (kiln-gan's loss.rs) against their
//! formulas, WGAN-GP's penalty and R1 on a linear critic whose input
//! gradient is known in closed form (value and, through double backward,
//! the gradient w.r.t. the critic's weights), and a short run of each
//! variant through the run loop, on the CPU and on the GPU backends.

use std::sync::atomic::AtomicBool;

use kiln::gan::loss::{d_loss, g_loss, gradient_penalty, r1_penalty};
use kiln::gan::{DNorm, Dcgan, DcganConfig, GanLoss};
use kiln::train::train;
use kiln::{Tensor, Var};

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
        ("bce-r1", DcganConfig { r1: 10.0, ..t }),
    ]
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
