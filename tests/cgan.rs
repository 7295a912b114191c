//! The conditional GAN: its class grid's layout, label accuracy in eval,
//! labels outside 0–9 refused; the run loop's suite runs for it in train.rs.

use std::sync::atomic::AtomicBool;

use kiln::Device;
use kiln::gan::{Cgan, DcganConfig};
use kiln::tensor::Rng;
use kiln::train::evaluate::eval_run;
use kiln::train::models::cgan::{class_grid, interpolation_grid};
use kiln::train::{load_run, train};

use crate::train::{fresh, request, tiny_dcgan};

#[test]
fn the_class_grid_has_a_row_per_class_and_a_noise_per_column() {
    let dir = fresh("cgan-grid");
    train::<Cgan>(&request(&tiny_dcgan(), &dir, 2), &AtomicBool::new(false)).unwrap();
    assert!(dir.join("samples/classes.png").exists());
    let (model, _, _) = load_run::<Cgan>(&dir, Device::Cpu).unwrap();
    let grid = class_grid(&model, &mut Rng::new(4)).unwrap();
    assert_eq!(grid.shape(), [100, 1, 16, 16]);
    let noise = model.noise(10, &mut Rng::new(4)).unwrap();
    for (row, col) in [(0, 0), (3, 7), (9, 2)] {
        let z = noise.narrow(0, col, 1).unwrap();
        let one = model.sample(&z, &[row as u8]).unwrap().to_vec::<f32>().unwrap();
        let cell = grid.narrow(0, row * 10 + col, 1).unwrap().to_vec::<f32>().unwrap();
        // Equal up to rounding (a batch of 100 and of 1 take different GEMM blockings).
        let diff = one.iter().zip(&cell).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "row {row} column {col}: {diff}");
    }
    // The label changes the image.
    let z = noise.narrow(0, 0, 1).unwrap();
    assert_ne!(
        model.sample(&z, &[0]).unwrap().to_vec::<f32>().unwrap(),
        model.sample(&z, &[1]).unwrap().to_vec::<f32>().unwrap()
    );
    // Labels outside 0–9 are errors.
    assert!(model.sample(&z, &[10]).unwrap_err().to_string().contains("labels must be 0–9"));
    // The interpolation grid: row r is class r, column t the point t/9 of the way from z₀ to z₁.
    assert!(dir.join("samples/interpolation.png").exists());
    let grid = interpolation_grid(&model, &mut Rng::new(6)).unwrap();
    let ends = model.noise(2, &mut Rng::new(6)).unwrap();
    let (z0, z1) = (ends.narrow(0, 0, 1).unwrap(), ends.narrow(0, 1, 1).unwrap());
    let z = z0.mul_scalar(2.0 / 3.0).unwrap().add(&z1.mul_scalar(1.0 / 3.0).unwrap()).unwrap();
    let one = model.sample(&z, &[5]).unwrap().to_vec::<f32>().unwrap();
    let cell = grid.narrow(0, 5 * 10 + 3, 1).unwrap().to_vec::<f32>().unwrap();
    let diff = one.iter().zip(&cell).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "interpolation row 5 column 3: {diff}");
    let first = model.sample(&z0, &[5]).unwrap().to_vec::<f32>().unwrap();
    let cell0 = grid.narrow(0, 50, 1).unwrap().to_vec::<f32>().unwrap();
    assert!(first.iter().zip(&cell0).all(|(a, b)| (a - b).abs() < 1e-5), "column 0 is z₀");
}

#[test]
fn eval_reports_the_label_accuracy() {
    let dir = fresh("cgan-eval");
    train::<Cgan>(&request(&tiny_dcgan(), &dir, 2), &AtomicBool::new(false)).unwrap();
    let line = eval_run::<Cgan>(&dir, &crate::eval::run_args(&dir, 40)).unwrap();
    assert!(line.contains("label accuracy"), "{line}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    let accuracy = report["samples"]["label_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
}

/// The conditional GAN with spectral norm (D's convolutions and its linear
/// head), self-attention, TTUR and an EMA of G (with its label embedding),
/// resumed mid-run: the same final checkpoint as a run without the pause.
#[test]
fn spectral_norm_self_attention_and_ema_train_and_resume() {
    let ck = resumes_bit_for_bit(&crate::gan_losses::sn_sa_ema(), "cgan-sn");
    assert!(ck.tensors.keys().any(|k| k.starts_with("g_ema.") && k.ends_with("label.weight")));
    assert!(ck.tensors.contains_key("d.linear.weight_u"), "the linear head is spectral-normed");
}

/// --conditional-bn: G's batch norms take γ[c], β[c] per class (torch-named
/// buffers, β starting at 0), with self-attention and EMA too; the class
/// changes the image; the run resumes bit for bit; the DCGAN refuses it.
#[test]
fn conditional_batch_norm_generator_trains_and_resumes() {
    let cfg = DcganConfig { conditional_bn: true, self_attention: 8, ema: 0.9, ..tiny_dcgan() };
    let gan = Cgan::new(cfg.clone(), Device::Cpu, 1).unwrap();
    let names: std::collections::HashMap<String, kiln::Tensor> = gan.g_store.named_tensors().into_iter().collect();
    for want in ["main.0.weight", "main.1.gamma.weight", "main.1.beta.weight", "main.1.running_var", "main.6.gamma"] {
        assert!(names.contains_key(want), "G has no {want}: {:?}", names.keys());
    }
    assert!(names["main.4.beta.weight"].to_vec_f64().iter().all(|&b| b == 0.0));
    assert!(!names.keys().any(|n| n.starts_with("label.")), "no label embedding beside z");
    let z = gan.noise(1, &mut Rng::new(2)).unwrap();
    assert_ne!(gan.sample(&z, &[0]).unwrap().to_vec_f64(), gan.sample(&z, &[1]).unwrap().to_vec_f64());
    resumes_bit_for_bit(&cfg, "cgan-cbn");
    let dcgan = <kiln::gan::Dcgan as kiln::train::Recipe>::check(&cfg).unwrap_err().to_string();
    assert!(dcgan.contains("--conditional-bn"), "{dcgan}");
}

/// 2 steps, then resumed to 4 ≡ 4 steps: the same final checkpoint (returned).
fn resumes_bit_for_bit(cfg: &DcganConfig, name: &str) -> kiln::nn::Checkpoint {
    let (whole, split) = (fresh(&format!("{name}-whole")), fresh(&format!("{name}-split")));
    train::<Cgan>(&request(cfg, &whole, 4), &AtomicBool::new(false)).unwrap();
    train::<Cgan>(&request(cfg, &split, 2), &AtomicBool::new(false)).unwrap();
    let again = crate::train::resume(request(cfg, &split, 4), &split, &["steps"]);
    train::<Cgan>(&again, &AtomicBool::new(false)).unwrap();
    let ck = |d: &std::path::Path| kiln::nn::load_checkpoint(&d.join("checkpoint.safetensors")).unwrap();
    let (a, b) = (ck(&whole), ck(&split));
    assert!(a.tensors.keys().any(|k| k.starts_with("g_ema.")), "the average is checkpointed");
    for (k, t) in &a.tensors {
        assert_eq!(t.to_vec_f64(), b.tensors[k].to_vec_f64(), "{k}");
    }
    a
}

/// The conditional-batch-norm generator on wgpu and emulated CUDA: 3 steps
/// match the CPU's losses.
#[test]
fn conditional_batch_norm_on_wgpu_and_cuda_matches_the_cpu() {
    let cfg = DcganConfig { conditional_bn: true, ..tiny_dcgan() };
    crate::train::gpu_runs_match_the_cpu::<Cgan>(&cfg, "cgan-cbn-gpu");
}
