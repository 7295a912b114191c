//! DCGAN end to end at a tiny size: finite losses, every output file, a
//! bit-exact checkpoint round trip, resume ≡ an uninterrupted run, and the
//! layers against a PyTorch forward/backward from fixed weights.

use std::sync::atomic::AtomicBool;

use kiln::gan::{Dcgan, DcganConfig};
use kiln::train::dcgan::{TrainOptions, load_run, parameters, train};
use kiln::{Device, Tensor};

fn options(out: &std::path::Path, steps: usize) -> TrainOptions {
    TrainOptions {
        device: "cpu".into(),
        data: None,
        channels: 1,
        steps,
        epochs: None,
        batch: 8,
        image_size: 16,
        ngf: 4,
        ndf: 4,
        lr: 2e-4,
        seed: 5,
        label_smoothing: false,
        out: Some(out.to_path_buf()),
        resume: None,
        sample_every: 2,
        checkpoint_every: 2,
        quiet: true,
    }
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    // The trainer creates the run folder itself: hand it a path that does not exist.
    let d = crate::common::scratch_dir(&format!("dcgan-{name}"));
    std::fs::remove_dir(&d).unwrap();
    d
}

fn bits(params: &[(String, Vec<f32>)]) -> Vec<(String, Vec<u32>)> {
    params.iter().map(|(n, v)| (n.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn a_short_run_writes_everything_and_resumes_bit_exactly() {
    let stop = AtomicBool::new(false);
    // Uninterrupted: 4 steps.
    let full_dir = fresh_dir("full");
    let full = train(&options(&full_dir, 4), &stop).unwrap();
    assert_eq!(full.steps_done, 4);
    let last = full.last.unwrap();
    assert!(last.is_finite(), "{last:?}");
    for f in [
        "config.json",
        "metrics.csv",
        "checkpoint.safetensors",
        "loss.png",
        "samples/final.png",
        "samples/step-000002.png",
    ] {
        assert!(full_dir.join(f).exists(), "missing {f}");
    }
    let rows = std::fs::read_to_string(full_dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 5, "header + one row per step");

    // Interrupted after 2 steps, then resumed to 4.
    let part_dir = fresh_dir("part");
    train(&options(&part_dir, 2), &stop).unwrap();
    let resumed = train(&TrainOptions { resume: Some(part_dir.clone()), ..options(&part_dir, 4) }, &stop).unwrap();
    assert_eq!(resumed.steps_done, 2);
    let a = bits(&parameters(&load_run(&full_dir).unwrap()).unwrap());
    let b = bits(&parameters(&load_run(&part_dir).unwrap()).unwrap());
    assert_eq!(a.len(), b.len());
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{n} differs between the resumed and the uninterrupted run");
    }
    let rows = std::fs::read_to_string(part_dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 5, "the resumed run continues the same metrics file");
}

/// A run on a GPU backend writes its checkpoint from the device and resumes
/// into the device (the checkpoint holds host tensors).
fn resumes_on(device: &str, name: &str) {
    let stop = AtomicBool::new(false);
    let dir = fresh_dir(name);
    let o = |steps| TrainOptions { device: device.into(), ..options(&dir, steps) };
    let first = train(&o(2), &stop).unwrap();
    assert!(first.last.unwrap().is_finite());
    let resumed = train(&TrainOptions { resume: Some(dir.clone()), ..o(3) }, &stop).unwrap();
    assert_eq!(resumed.steps_done, 1);
    assert!(resumed.last.unwrap().is_finite());
    let rows = std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 4, "header + 3 steps");
}

#[test]
fn trains_and_resumes_on_wgpu() {
    if crate::gpu_parity::wgpu().is_some() {
        resumes_on("wgpu", "wgpu-resume");
    }
}

#[test]
fn trains_and_resumes_on_cuda() {
    if crate::gpu_parity::cuda().is_some() {
        resumes_on("cuda", "cuda-resume");
    }
}

#[test]
fn ctrl_c_stops_after_the_step_with_a_checkpoint() {
    let stop = AtomicBool::new(true);
    let dir = fresh_dir("stop");
    let s = train(&options(&dir, 50), &stop).unwrap();
    assert_eq!(s.steps_done, 1);
    assert!(dir.join("checkpoint.safetensors").exists());
}

#[test]
fn unbuilt_devices_and_bad_data_are_clear_errors() {
    let stop = AtomicBool::new(false);
    let dir = fresh_dir("errors");
    // No CUDA device here (the tests' CPU emulation has only ordinal 0).
    let e = train(&TrainOptions { device: "cuda:7".into(), ..options(&dir, 1) }, &stop).unwrap_err().to_string();
    assert!(e.contains("--device cuda:7") && e.contains("Cuda(7)"), "{e}");
    let e = train(&TrainOptions { device: "tpu".into(), ..options(&dir, 1) }, &stop).unwrap_err().to_string();
    assert!(e.contains("expected auto, cpu"), "{e}");
    let e =
        train(&TrainOptions { data: Some("/nonexistent".into()), ..options(&dir, 1) }, &stop).unwrap_err().to_string();
    assert!(e.contains("/nonexistent"), "{e}");
    let e = train(&TrainOptions { image_size: 24, ..options(&dir, 1) }, &stop).unwrap_err().to_string();
    assert!(e.contains("power of two"), "{e}");
}

#[test]
fn generator_and_discriminator_shapes() {
    for size in [16, 32, 64] {
        let cfg = DcganConfig { image_size: size, ngf: 2, ndf: 2, nz: 4, ..Default::default() };
        let m = Dcgan::new(cfg, Device::Cpu, 0).unwrap();
        let z = m.noise(3, &mut kiln::tensor::Rng::new(0)).unwrap();
        let img = m.sample(&z).unwrap();
        assert_eq!(img.shape(), &[3, 1, size, size]);
        assert!(img.to_vec_f64().iter().all(|v| v.abs() <= 1.0));
        let logits = kiln::nn::Module::forward(&m.d, &img, true).unwrap();
        assert_eq!(logits.shape(), &[3, 1, 1, 1]);
    }
    let _ = Tensor::zeros(&[1], kiln::DType::F32, Device::Cpu);
}

#[test]
fn trains_on_an_rgb_image_folder() {
    let root = fresh_dir("rgb-data");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..8u8 {
        let px: Vec<u8> = (0..20 * 20 * 3).map(|k| (k as u8).wrapping_mul(i + 1)).collect();
        kiln::train::images::write_png(&root.join(format!("{i}.png")), 20, 20, true, &px).unwrap();
    }
    let dir = fresh_dir("rgb-run");
    let o = TrainOptions { data: Some(root), channels: 3, ..options(&dir, 2) };
    let s = train(&o, &AtomicBool::new(false)).unwrap();
    assert!(s.last.unwrap().is_finite());
    assert_eq!(load_run(&dir).unwrap().config.nc, 3);
}

#[test]
fn a_non_finite_loss_stops_the_run_naming_the_step() {
    let dir = fresh_dir("nan");
    let e = train(&TrainOptions { lr: f64::NAN, ..options(&dir, 5) }, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.contains("learning rate must be a positive number"), "{e}");
    // Two good steps, then the run resumes with a learning rate so large
    // (Adam moves every weight by about lr) that the activations overflow.
    train(&options(&dir, 2), &AtomicBool::new(false)).unwrap();
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace("\"lr\": 0.0002", "\"lr\": 1e30");
    std::fs::write(&cfg_path, cfg).unwrap();
    let o = TrainOptions { resume: Some(dir.clone()), ..options(&dir, 5) };
    let e = train(&o, &AtomicBool::new(false)).unwrap_err().to_string();
    assert!(e.starts_with("step 2: a loss is not finite"), "{e}");
    assert!(e.contains("checkpoint.safetensors"), "{e}");
    // The last good checkpoint (after step 2) is intact and finite.
    let params = parameters(&load_run(&dir).unwrap()).unwrap();
    assert!(params.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
}
