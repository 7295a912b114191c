//! kiln-nn: checkpoints (bit-exact round trip, clear errors), PyTorch
//! state_dicts, Adam's update against an independent scalar implementation
//! of torch's rule, layers.

use std::collections::HashMap;

use kiln::nn::{Adam, AdamConfig, BatchNorm2d, Init, Linear, Module, VarStore, load_checkpoint, save_checkpoint};
use kiln::{DType, Device, Tensor};

fn temp_dir(name: &str) -> std::path::PathBuf {
    crate::common::scratch_dir(&format!("nn-{name}"))
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let vs = VarStore::new(Device::Cpu, DType::F32, 3);
    let root = vs.root();
    let _lin = Linear::new(&root.sub("fc"), 5, 3, true).unwrap();
    let _bn = BatchNorm2d::new(&root.sub("bn"), 3).unwrap();
    let path = temp_dir("rt").join("ck.safetensors");
    let meta = HashMap::from([("step".to_string(), "42".to_string())]);
    save_checkpoint(&path, &vs.named_tensors(), &meta).unwrap();
    let ck = load_checkpoint(&path).unwrap();
    assert_eq!(ck.metadata["step"], "42");
    let other = VarStore::new(Device::Cpu, DType::F32, 99);
    let _lin2 = Linear::new(&other.root().sub("fc"), 5, 3, true).unwrap();
    let _bn2 = BatchNorm2d::new(&other.root().sub("bn"), 3).unwrap();
    ck.restore(&other, "", &path).unwrap();
    for ((n, a), (_, b)) in vs.named_tensors().iter().zip(other.named_tensors()) {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{n}");
    }
    assert!(!path.with_extension("tmp").exists(), "the temporary file is renamed away");
}

#[test]
fn checkpoint_errors_name_the_tensor() {
    let vs = VarStore::new(Device::Cpu, DType::F32, 0);
    let _l = Linear::new(&vs.root().sub("fc"), 4, 2, false).unwrap();
    let path = temp_dir("err").join("ck.safetensors");
    save_checkpoint(&path, &vs.named_tensors(), &HashMap::new()).unwrap();
    let ck = load_checkpoint(&path).unwrap();
    let wider = VarStore::new(Device::Cpu, DType::F32, 0);
    let _l = Linear::new(&wider.root().sub("fc"), 5, 2, true).unwrap();
    let e = ck.restore(&wider, "", &path).unwrap_err().to_string();
    assert!(e.contains("fc.weight") && e.contains("[2, 4]") && e.contains("[2, 5]"), "{e}");
    let missing = VarStore::new(Device::Cpu, DType::F32, 0);
    let _l = Linear::new(&missing.root().sub("head"), 4, 2, false).unwrap();
    let e = ck.restore(&missing, "", &path).unwrap_err().to_string();
    assert!(e.contains("missing tensor head.weight"), "{e}");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let e = load_checkpoint(&path).unwrap_err().to_string();
    assert!(e.contains("ck.safetensors") && e.contains("not a safetensors file"), "{e}");
}

#[test]
fn adam_keeps_a_subnormal_second_moment_when_eps_is_zero() {
    // A flushed v would divide m by 0; with eps = 0 kiln keeps v as torch does.
    use kiln::tensor::ops::adam::AdamStep;
    let t = |v: f32| Tensor::from_slice(&[v], &[1], Device::Cpu).unwrap();
    let (p, g, m, v) = (t(1.0), t(0.0), t(1e-20), t(1e-39));
    p.adam_update(&g, &m, &v, &AdamStep::new(AdamConfig { eps: 0.0, ..AdamConfig::default() }, 3)).unwrap();
    assert!(v.to_vec::<f32>().unwrap()[0] > 0.0);
    assert!(p.to_vec::<f32>().unwrap()[0].is_finite());
}

#[test]
fn adam_follows_torchs_update_rule() {
    adam_matches(false);
}

#[test]
fn adamw_follows_torchs_update_rule() {
    adam_matches(true);
}

fn adam_matches(decoupled: bool) {
    let vs = VarStore::new(Device::Cpu, DType::F64, 0);
    let w = vs.root().param("w", &[3], Init::Const(0.5)).unwrap();
    let cfg = AdamConfig { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.01, decoupled };
    let mut opt = Adam::new(vs.trainable(), cfg).unwrap();
    let target = [1.0, -2.0, 3.0];
    let (mut p, mut m, mut v) = ([0.5f64; 3], [0.0f64; 3], [0.0f64; 3]);
    for step in 1..=5 {
        let t = Tensor::from_slice(&target, &[3], Device::Cpu).unwrap();
        let loss = w.sub(&t).unwrap().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        for i in 0..3 {
            let mut g = 2.0 * (p[i] - target[i]);
            if decoupled {
                p[i] *= 1.0 - cfg.lr * cfg.weight_decay;
            } else {
                g += cfg.weight_decay * p[i];
            }
            m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g;
            v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g * g;
            let (bc1, bc2) = (1.0 - cfg.beta1.powi(step), 1.0 - cfg.beta2.powi(step));
            p[i] -= cfg.lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + cfg.eps);
        }
        let got = w.to_vec::<f64>().unwrap();
        for i in 0..3 {
            assert!((got[i] - p[i]).abs() < 1e-12, "step {step}: {got:?} vs {p:?}");
        }
    }
    let (state, steps) = opt.state();
    assert_eq!((state.len(), steps), (2, 5));
}

#[test]
fn layers_have_torchs_shapes_and_default_init_bounds() {
    let vs = VarStore::new(Device::Cpu, DType::F32, 1);
    let lin = Linear::new(&vs.root().sub("fc"), 16, 4, true).unwrap();
    let bound = 1.0 / 4.0; // 1/√fan_in
    assert!(lin.weight.to_vec_f64().iter().all(|v| v.abs() <= bound));
    let x = Tensor::ones(&[2, 16], DType::F32, Device::Cpu).unwrap();
    assert_eq!(lin.forward(&x, true).unwrap().shape(), &[2, 4]);
    let names: Vec<String> = vs.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["fc.weight", "fc.bias"]);
}

#[test]
fn batch_norm_layer_updates_running_stats_only_in_training() {
    let vs = VarStore::new(Device::Cpu, DType::F64, 1);
    let bn = BatchNorm2d::new(&vs.root(), 2).unwrap();
    let x = Tensor::arange(0.0, 16.0, 1.0, DType::F64, Device::Cpu).unwrap().reshape(&[2, 2, 2, 2]).unwrap();
    bn.forward(&x, false).unwrap();
    assert_eq!(bn.running_mean.to_vec_f64(), vec![0.0, 0.0]);
    bn.forward(&x, true).unwrap();
    // channel 0 holds 0..4 and 8..12: mean 5.5
    assert!((bn.running_mean.to_vec_f64()[0] - 0.55).abs() < 1e-12);
    assert_eq!(bn.num_batches_tracked.to_scalar().unwrap(), 1.0);
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name)
}

fn dcgan_64(vs: &VarStore, ngf: usize) -> kiln::nn::Sequential {
    let cfg = kiln::gan::DcganConfig { nz: 16, ngf, nc: 1, image_size: 64, ..Default::default() };
    kiln::gan::dcgan::generator(&vs.root().sub("main"), &cfg).unwrap()
}

/// pytorch/examples' DCGAN generator, exported with safetensors.torch's
/// save_file(netG.state_dict()) by scripts/torch_dcgan_weights.py, loads by
/// name into kiln's generator, which then draws PyTorch's images from the
/// same noise to 1e-5, in eval mode (the loaded running statistics) and in
/// training mode (batch statistics).
#[test]
fn dcgan_generator_loads_pytorch_weights() {
    let vs = VarStore::new(Device::Cpu, DType::F32, 0);
    let net = dcgan_64(&vs, 8);
    let report = kiln::nn::load_state_dict(&vs, &fixture("dcgan_generator_64.safetensors"), true).unwrap();
    assert_eq!(report.loaded.len(), vs.named_tensors().len());
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let tracked: HashMap<String, Tensor> = vs.named_tensors().into_iter().collect();
    assert_eq!(tracked["main.1.num_batches_tracked"].to_scalar().unwrap(), 3.0, "int64 count converted");
    let images = load_checkpoint(&fixture("dcgan_generator_64_images.safetensors")).unwrap().tensors;
    for (mode, train) in [("eval", false), ("train", true)] {
        let got = net.forward(&images["noise"], train).unwrap();
        assert_eq!(got.shape(), &[4, 1, 64, 64]);
        crate::common::assert_close(mode, &got.to_vec_f64(), &images[mode].to_vec_f64(), 1e-5, 0.0);
    }
}

/// As torch's load_state_dict: a shape mismatch is always an error, strict
/// also refuses missing and unexpected names, and every offending name is
/// listed; non-strict loads what matches and reports the rest.
#[test]
fn state_dict_errors_name_every_tensor() {
    let path = fixture("dcgan_generator_64.safetensors");
    let narrow = VarStore::new(Device::Cpu, DType::F32, 0);
    let _ = dcgan_64(&narrow, 4);
    let before = narrow.named_tensors()[0].1.to_vec_f64();
    for strict in [true, false] {
        let msg = kiln::nn::load_state_dict(&narrow, &path, strict).unwrap_err().to_string();
        assert!(msg.contains("main.0.weight: [16, 64, 4, 4] in the file, [16, 32, 4, 4] in the model"), "{msg}");
        assert!(msg.contains("main.12.weight: [8, 1, 4, 4]"), "every mismatch is named: {msg}");
    }
    assert_eq!(narrow.named_tensors()[0].1.to_vec_f64(), before, "a refused load copies nothing");
    // One extra parameter (missing from the file) and one layer only (the rest unexpected).
    let extra = VarStore::new(Device::Cpu, DType::F32, 0);
    let _ = dcgan_64(&extra, 8);
    let _head = Linear::new(&extra.root().sub("head"), 2, 2, false).unwrap();
    let msg = kiln::nn::load_state_dict(&extra, &path, true).unwrap_err().to_string();
    assert!(msg.contains("missing key(s): head.weight"), "{msg}");
    let report = kiln::nn::load_state_dict(&extra, &path, false).unwrap();
    assert_eq!(report.missing, vec!["head.weight".to_string()]);
    let one = VarStore::new(Device::Cpu, DType::F64, 0);
    let w = one.root().sub("main").sub(0).param("weight", &[16, 64, 4, 4], Init::Const(0.0)).unwrap();
    let msg = kiln::nn::load_state_dict(&one, &path, true).unwrap_err().to_string();
    assert!(msg.contains("unexpected key(s): main.1.bias, main.1.num_batches_tracked"), "{msg}");
    let report = kiln::nn::load_state_dict(&one, &path, false).unwrap();
    assert_eq!((report.loaded.len(), report.unexpected.len()), (1, 24));
    assert!(w.to_vec_f64().iter().any(|&v| v != 0.0), "loaded, converted to the store's f64");
}

#[test]
fn fused_adam_update_checks_its_operands() {
    let t = |n: usize| Tensor::zeros(&[n], DType::F32, Device::Cpu).unwrap();
    let step = kiln::tensor::ops::adam::AdamStep::new(AdamConfig::default(), 1);
    let p = t(3);
    assert!(p.adam_update(&t(2), &t(3), &t(3), &step).is_err());
    assert!(p.adam_update(&t(3), &p, &t(3), &step).is_err(), "moments may not alias the parameter");
    let g = Tensor::zeros(&[3], DType::F64, Device::Cpu).unwrap();
    assert!(p.adam_update(&g, &t(3), &t(3), &step).is_err());
}
