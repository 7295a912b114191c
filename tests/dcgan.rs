//! DCGAN's own training tests (the run loop's are in train.rs, run for
//! DCGAN too): GPU backends, image folders, errors, old run folders.

use std::sync::atomic::AtomicBool;

use kiln::gan::{Dcgan, DcganConfig};
use kiln::train::{load_run, train};
use kiln::{Device, Tensor};

use crate::train::{fresh, request, resume, tiny_dcgan};

/// A run on a GPU backend writes its checkpoint from the device and resumes
/// into the device (the checkpoint holds host tensors).
fn resumes_on(device: &str, name: &str) {
    let stop = AtomicBool::new(false);
    let dir = fresh(name);
    let o = |steps| {
        let mut r = request(&tiny_dcgan(), &dir, steps);
        r.how.device = device.into();
        r
    };
    let first = train::<Dcgan>(&o(2), &stop).unwrap();
    assert!(first.last.iter().all(|(_, v)| v.is_finite()));
    let resumed = train::<Dcgan>(&resume(o(3), &dir, &["steps", "device"]), &stop).unwrap();
    assert_eq!(resumed.steps_done, 1);
    assert!(resumed.last.iter().all(|(_, v)| v.is_finite()));
    let rows = std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 4, "header + 3 steps");
}

#[test]
fn trains_and_resumes_on_wgpu() {
    if crate::gpu_parity::wgpu().is_some() {
        resumes_on("wgpu", "dcgan-wgpu-resume");
    }
}

#[test]
fn trains_and_resumes_on_cuda() {
    if crate::gpu_parity::cuda().is_some() {
        resumes_on("cuda", "dcgan-cuda-resume");
    }
}

#[test]
fn unbuilt_devices_and_bad_data_are_clear_errors() {
    let stop = AtomicBool::new(false);
    let dir = fresh("dcgan-errors");
    let with = |f: &dyn Fn(&mut kiln::train::TrainRequest<DcganConfig>)| {
        let mut r = request(&tiny_dcgan(), &dir, 1);
        f(&mut r);
        train::<Dcgan>(&r, &stop).unwrap_err().to_string()
    };
    // No CUDA device here (the tests' CPU emulation has only ordinal 0).
    let e = with(&|r| r.how.device = "cuda:7".into());
    assert!(e.contains("--device cuda:7") && e.contains("Cuda(7)"), "{e}");
    let e = with(&|r| r.how.device = "tpu".into());
    assert!(e.contains("expected auto, cpu"), "{e}");
    let e = with(&|r| r.run.data = Some("/nonexistent".into()));
    assert!(e.starts_with("--data /nonexistent"), "{e}");
    let e = with(&|r| r.model.image_size = 24);
    assert!(e.starts_with("--image-size 24"), "{e}");
    let e = with(&|r| r.model.image_size = 65536);
    assert!(e.starts_with("--image-size 65536"), "{e}");
    let e = with(&|r| r.model.ngf = 0);
    assert!(e.starts_with("--ngf 0"), "{e}");
    assert!(!dir.exists(), "a failed command left a folder");
}

/// A run folder as the trainer before the shared loop wrote it: a flat
/// config.json and no store generators in the checkpoint. It still samples
/// and resumes.
#[test]
fn runs_from_before_the_shared_loop_still_load() {
    let dir = fresh("dcgan-legacy");
    train::<Dcgan>(&request(&tiny_dcgan(), &dir, 2), &AtomicBool::new(false)).unwrap();
    let data = kiln::data::shipped_mnist_dir().canonicalize().unwrap();
    let flat = serde_json::json!({
        "model": "dcgan", "data": data.display().to_string(), "steps": 2, "batch": 8, "image_size": 16, "nz": 100,
        "ngf": 4, "ndf": 4, "nc": 1, "lr": 0.0002, "beta1": 0.5, "seed": 5, "real_label": 1.0,
        "sample_every": 2, "checkpoint_every": 2,
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&flat).unwrap()).unwrap();
    // metrics.csv without the evaluation columns, as kiln wrote it then.
    let old = "step,epoch,loss_d,loss_g,d_x,d_g_z1,d_g_z2,seconds\n1,0,1,2,0.5,0.5,0.5,0.25\n2,0,1,2,0.5,0.5,0.5,0.5\n";
    std::fs::write(dir.join("metrics.csv"), old).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let mut ck = kiln::nn::load_checkpoint(&path).unwrap();
    ck.metadata.retain(|k, _| !k.starts_with("rng."));
    // BatchNorm's num_batches_tracked did not exist then either.
    ck.tensors.retain(|k, _| !k.ends_with("num_batches_tracked"));
    let tensors: Vec<(String, Tensor)> = ck.tensors.into_iter().collect();
    kiln::nn::save_checkpoint(&path, &tensors, &ck.metadata).unwrap();
    let (model, file, step) = load_run::<Dcgan>(&dir, Device::Cpu).unwrap();
    assert_eq!((step, file.run.batch, model.config.ngf), (2, Some(8), 4));
    let r = train::<Dcgan>(&resume(request(&tiny_dcgan(), &dir, 3), &dir, &["steps"]), &AtomicBool::new(false));
    assert_eq!(r.unwrap().step, 3);
    // Its rows moved to today's columns by name: the evaluation cells empty, seconds last.
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines[0], "step,epoch,loss_d,loss_g,d_x,d_g_z1,d_g_z2,fid,classifier_score,modes,seconds");
    assert_eq!(lines[2], "2,0,1,2,0.5,0.5,0.5,,,,0.5");
    assert_eq!(lines.len(), 4);
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
    let root = fresh("dcgan-rgb-data");
    std::fs::create_dir_all(&root).unwrap();
    // 10 images of one class: a fifth held out, 8 to train on.
    for i in 0..10u8 {
        let px: Vec<u8> = (0..20 * 20 * 3).map(|k| (k as u8).wrapping_mul(i + 1)).collect();
        kiln::train::images::write_png(&root.join(format!("{i}.png")), 20, 20, true, &px).unwrap();
    }
    let dir = fresh("dcgan-rgb-run");
    let mut r = request(&tiny_dcgan(), &dir, 2);
    r.run.data = Some(root);
    r.run.channels = 3;
    let s = train::<Dcgan>(&r, &AtomicBool::new(false)).unwrap();
    assert!(s.last.iter().all(|(_, v)| v.is_finite()));
    assert_eq!(load_run::<Dcgan>(&dir, Device::Cpu).unwrap().0.config.nc, 3);
}
