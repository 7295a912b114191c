//! GPU backend checks on fixed cases, beside gpu_parity.rs's random-shape
//! properties: grids past 65535 blocks, NaN handling, tiles crossing every
//! boundary, the fused Adam update (and its subnormal flush), typed errors,
//! DCGAN steps, f16 storage. Each exists as `<name>_wgpu` and `<name>_cuda`,
//! skipping (or failing under KILN_REQUIRE_*) as gpu_parity's tests do.

use kiln::tensor::UnaryOp;
use kiln::tensor::testing::strategies::randn;
use kiln::{DType, Device, Tensor, Var};

use crate::gpu_parity::{assert_near, cuda, parity, wgpu};

/// Runs `$body(device)` as `$wgpu` and `$cuda` tests.
macro_rules! gpu_tests {
    ($($body:ident => $wgpu:ident, $cuda:ident;)*) => {
        $(
            #[test]
            fn $wgpu() {
                if let Some(dev) = wgpu() {
                    $body(dev);
                }
            }

            #[test]
            fn $cuda() {
                if let Some(dev) = cuda() {
                    $body(dev);
                }
            }
        )*
    };
}

gpu_tests! {
    big_tiles_cross_every_boundary => big_tiles_cross_every_boundary_wgpu, big_tiles_cross_every_boundary_cuda;
    adam_update => adam_update_wgpu, adam_update_cuda;
    adam_flushes_subnormal_moments => adam_flushes_subnormal_moments_wgpu, adam_flushes_subnormal_moments_cuda;
    errors_are_typed => errors_are_typed_wgpu, errors_are_typed_cuda;
    dcgan_steps_match_the_cpu => dcgan_steps_match_the_cpu_wgpu, dcgan_steps_match_the_cpu_cuda;
    f16_storage_matmul_conv_and_casts => f16_storage_matmul_conv_and_casts_wgpu, f16_storage_matmul_conv_and_casts_cuda;
    grids_past_65535_blocks => grids_past_65535_blocks_wgpu, grids_past_65535_blocks_cuda;
    nan_follows_the_cpu => nan_follows_the_cpu_wgpu, nan_follows_the_cpu_cuda;
    pytorch_edge_cases => pytorch_edge_cases_wgpu, pytorch_edge_cases_cuda;
    pytorch_weights_load => pytorch_weights_load_wgpu, pytorch_weights_load_cuda;
}

/// A PyTorch state_dict (pytorch/examples' DCGAN generator, int64 counts
/// included) loads into a store on the device, and the generator draws
/// PyTorch's images there too; BatchNorm with momentum None counts batches
/// on the device (one host read per forward).
fn pytorch_weights_load(dev: Device) {
    use kiln::nn::{BatchNorm2d, Module, VarStore};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let vs = VarStore::new(dev, DType::F32, 0);
    let cfg = kiln::gan::DcganConfig { nz: 16, ngf: 8, nc: 1, image_size: 64, ..Default::default() };
    let net = kiln::gan::dcgan::generator(&vs.root().sub("main"), &cfg).unwrap();
    kiln::nn::load_state_dict(&vs, &dir.join("dcgan_generator_64.safetensors"), true).unwrap();
    let images = kiln::nn::load_checkpoint(&dir.join("dcgan_generator_64_images.safetensors")).unwrap().tensors;
    let got = net.forward(&images["noise"].to_device(dev).unwrap(), false).unwrap();
    let want = &images["eval"];
    let diff = got.to_vec_f64().iter().zip(want.to_vec_f64()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-4, "{dev:?}: {diff}");
    let bn_store = VarStore::new(dev, DType::F32, 0);
    let mut bn = BatchNorm2d::new(&bn_store.root(), 2).unwrap();
    bn.momentum = None;
    let x = randn(&[3, 2, 2, 2], 8).to_dtype(DType::F32).unwrap().to_device(dev).unwrap();
    for _ in 0..3 {
        bn.forward(&x, true).unwrap();
    }
    assert_eq!(bn.num_batches_tracked.to_scalar().unwrap(), 3.0);
    // The cumulative average of three equal batches is that batch's mean.
    let mean = x.mean(&[0, 2, 3], false).unwrap().to_vec_f64();
    let running = bn.running_mean.to_vec_f64();
    assert!(running.iter().zip(&mean).all(|(a, b)| (a - b).abs() < 1e-6), "{running:?} vs {mean:?}");
}

/// The PyTorch edge cases of tests/torch_semantics.rs on the device: pow
/// with a tensor exponent (0⁰, a zero base), attention rows with every key
/// masked (output and gradients 0) and grouped heads, tied maxima sharing
/// the gradient, a norm's subgradient at 0, BCE at exactly 0 and 1 with
/// weights, cross_entropy with weights, ignored and spatial targets, and
/// nearest-exact interpolation by a scale factor.
fn pytorch_edge_cases(dev: Device) {
    use kiln::tensor::loss::{self, Reduction};
    use kiln::tensor::{InterpolateTo, NearestMode};
    let t = |v: &[f64], s: &[usize]| crate::common::t64(v, s);
    let ok = |r: Result<(), proptest::test_runner::TestCaseError>| r.unwrap();
    let base = t(&[0.0, 0.0, 0.5, 2.0, 1.5, 0.0], &[2, 3, 1]);
    let exp = t(&[0.0, 1.0, 2.0, 3.0], &[1, 1, 4]);
    ok(parity(dev, "pow", |v| v[0].pow(&v[1]), &[base, exp], 1e-5));
    let q = randn(&[2, 4, 3, 5], 1);
    let (k, v) = (randn(&[2, 2, 6, 5], 2), randn(&[2, 2, 6, 3], 3));
    let mut keep = vec![1.0; 18];
    keep[6..12].fill(0.0);
    keep[13..].fill(0.0);
    let keep = t(&keep, &[3, 6]);
    let f = |v: &[Tensor]| {
        let mask = Tensor::additive_mask(&v[3].detach())?;
        Tensor::scaled_dot_product_attention_gqa(&v[0], &v[1], &v[2], Some(&mask), false, None)
    };
    ok(parity(dev, "attention with fully masked rows, grouped heads", f, &[q, k, v, keep], 1e-5));
    let ties = t(&[1.0, 3.0, 3.0, 2.0, 2.0, 2.0, 0.5, -1.0, 0.5, 4.0, 1.0, 4.0], &[2, 2, 3]);
    ok(parity(dev, "amax with ties", |v| v[0].amax(&[0, 2], false), std::slice::from_ref(&ties), 1e-6));
    ok(parity(dev, "min_all with ties", |v| v[0].min_all(), std::slice::from_ref(&ties), 1e-6));
    let mut x = randn(&[3, 4], 4).to_vec_f64();
    x[4..8].fill(0.0);
    let x = t(&x, &[3, 4]);
    for ord in [2.0, 3.0, f64::INFINITY] {
        ok(parity(
            dev,
            "vector_norm with a zero row",
            |v| v[0].vector_norm(ord, &[1], false),
            std::slice::from_ref(&x),
            1e-5,
        ));
    }
    let p = t(&[0.0, 1.0, 0.3, 0.0, 1.0, 0.6], &[2, 3]);
    let target = t(&[0.0, 1.0, 0.5, 0.0, 1.0, 0.2], &[2, 3]);
    let w = t(&[0.5, 2.0, 1.0], &[3]);
    let f = |v: &[Tensor]| loss::binary_cross_entropy(&v[0], &v[1].detach(), Some(&v[2].detach()), Reduction::Sum);
    ok(parity(dev, "bce at 0 and 1 with weights", f, &[p, target, w], 1e-5));
    // Opposite target: torch's input gradient is ∓1/1e-12, never NaN.
    let p = Var::new(&t(&[0.0, 1.0], &[2]).to_dtype(DType::F32).unwrap().to_device(dev).unwrap()).unwrap();
    let target = t(&[1.0, 0.0], &[2]).to_dtype(DType::F32).unwrap().to_device(dev).unwrap();
    let l = loss::binary_cross_entropy(&p, &target, None, Reduction::Sum).unwrap();
    assert_eq!(l.to_scalar().unwrap(), 200.0);
    let g = l.backward().unwrap().get(&p).unwrap().to_vec_f64();
    assert!((g[0] + 1e12).abs() < 1e6 && (g[1] - 1e12).abs() < 1e6, "{g:?}");
    let logits = randn(&[2, 5, 3, 2], 5);
    let labels = Tensor::indices(&[1, -100, 4, 0, 2, 3, -100, 1, 0, 4, 2, 2], &[2, 3, 2], Device::Cpu).unwrap();
    let cw = t(&[0.5, 1.0, 2.0, 1.5, 0.25], &[5]);
    let f = |v: &[Tensor]| {
        let args = loss::CrossEntropy { weight: Some(&v[2].detach()), label_smoothing: 0.1, ..Default::default() };
        loss::cross_entropy(&v[0], &v[1], args)
    };
    ok(parity(dev, "cross_entropy, spatial, weighted, ignored", f, &[logits, labels, cw], 1e-5));
    let img = randn(&[1, 2, 5, 7], 6);
    let f = |v: &[Tensor]| v[0].interpolate_nearest(InterpolateTo::ScaleFactor([1.7, 0.6]), NearestMode::NearestExact);
    ok(parity(dev, "nearest-exact by 1.7 × 0.6", f, &[img], 1e-6));
}

/// More than 65535 blocks: the grid spills into y and overshoots; the
/// surplus blocks must neither write nor read out of range.
fn grids_past_65535_blocks(dev: Device) {
    let x = randn(&[65537, 3], 21);
    parity(dev, "max of 65537 rows", |t| t[0].amax(&[1], true), std::slice::from_ref(&x), 1e-6).unwrap();
    // The CPU emulation runs each block's 256 threads as fibers (~15 s per
    // such launch): one launch there; the other kernels share the same guard.
    if dev == Device::Cuda(0) && kiln::tensor::cuda::cuda_device(0).unwrap().is_emulated() {
        return;
    }
    parity(dev, "softmax over 65537 rows", |t| t[0].softmax(1), std::slice::from_ref(&x), 1e-5).unwrap();
    parity(dev, "sum of 65537 rows", |t| t[0].sum(&[1], false), &[x], 1e-5).unwrap();
}

/// NaN passes through relu, clamp and leaky_relu and gives sign 0, as on the CPU
/// (a NaN loss must not be hidden from the trainer's non-finite check).
fn nan_follows_the_cpu(dev: Device) {
    let vals = [f64::NAN, -1.5, 0.0, 2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let x = Tensor::from_f64(&vals, &[7], DType::F32, Device::Cpu).unwrap();
    for op in
        [UnaryOp::Relu, UnaryOp::Clamp { min: -1.0, max: 1.0 }, UnaryOp::LeakyRelu(0.1), UnaryOp::Sign, UnaryOp::Abs]
    {
        let want = x.unary(op).unwrap().to_vec_f64();
        let got = x.to_device(dev).unwrap().unary(op).unwrap().to_vec_f64();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w || (g.is_nan() && w.is_nan()), "{} of {}: {dev:?} {g} vs cpu {w}", op.name(), vals[i]);
        }
    }
}

fn big_tiles_cross_every_boundary(dev: Device) {
    // Channels and pixels past one 64-wide tile, K past several 16-deep slices.
    let x = randn(&[2, 70, 9, 9], 1);
    let w = randn(&[66, 70, 3, 3], 2);
    let p = kiln::tensor::Conv2dParams { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1 };
    parity(dev, "conv2d 70→66", |t| t[0].conv2d(&t[1], None, p), &[x, w], 1e-5).unwrap();
    let a = randn(&[130, 300], 3);
    let b = randn(&[300, 129], 4);
    parity(dev, "matmul 130×300×129", |t| t[0].matmul(&t[1]), &[a, b], 1e-5).unwrap();
    // A reduction long enough for the two-pass path.
    let x = randn(&[3, 5000], 5);
    parity(dev, "sum of long rows", |t| t[0].sum(&[1], false), std::slice::from_ref(&x), 1e-5).unwrap();
    parity(dev, "max of long rows", |t| t[0].amax(&[1], false), &[x], 1e-6).unwrap();
    let x = randn(&[8, 70, 4, 4], 6);
    let f = |t: &[Tensor]| t[0].batch_norm(None, None, None, None, true, 0.1, 1e-5);
    parity(dev, "batch_norm 70 channels", f, &[x], 1e-4).unwrap();
    let (q, k, v) = (randn(&[1, 2, 100, 64], 7), randn(&[1, 2, 90, 64], 8), randn(&[1, 2, 90, 32], 9));
    let f = |t: &[Tensor]| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, true, None);
    parity(dev, "attention L=100 S=90", f, &[q, k, v], 1e-5).unwrap();
    // Empty head sizes: E = 0 (every score 0, uniform weights over the
    // causal window; dQ and dK empty) and Ev = 0 (an empty output, zero
    // gradients). E = 0 with the default scale (1/√0 = ∞) too: as in torch,
    // the scores are still 0.
    let f = |t: &[Tensor]| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, true, Some(0.5));
    let f_default = |t: &[Tensor]| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, true, None);
    let (q, k, v) = (randn(&[1, 2, 5, 0], 10), randn(&[1, 2, 7, 0], 11), randn(&[1, 2, 7, 3], 12));
    parity(dev, "attention E=0", f, &[q.clone(), k.clone(), v.clone()], 1e-5).unwrap();
    parity(dev, "attention E=0, default scale", f_default, &[q, k, v], 1e-5).unwrap();
    let (q, k, v) = (randn(&[1, 2, 5, 4], 13), randn(&[1, 2, 7, 4], 14), randn(&[1, 2, 7, 0], 15));
    parity(dev, "attention Ev=0", f, &[q, k, v], 1e-5).unwrap();
}

fn adam_update(dev: Device) {
    use kiln::tensor::ops::adam::{AdamConfig, AdamStep};
    for config in [
        AdamConfig::default(),
        AdamConfig { weight_decay: 0.1, ..AdamConfig::default() },
        AdamConfig { weight_decay: 0.1, decoupled: true, lr: 0.01, ..AdamConfig::default() },
    ] {
        let (p, g) = (randn(&[37], 1).to_dtype(DType::F32).unwrap(), randn(&[37], 2).to_dtype(DType::F32).unwrap());
        let (m, v) = (
            Tensor::zeros(&[37], DType::F32, Device::Cpu).unwrap(),
            Tensor::zeros(&[37], DType::F32, Device::Cpu).unwrap(),
        );
        let dev_t: Vec<Tensor> = [&p, &g, &m, &v].iter().map(|t| t.to_device(dev).unwrap()).collect();
        for t in 1..=3 {
            let step = AdamStep::new(config, t);
            p.adam_update(&g, &m, &v, &step).unwrap();
            dev_t[0].adam_update(&dev_t[1], &dev_t[2], &dev_t[3], &step).unwrap();
        }
        for (a, b) in [&p, &m, &v].iter().zip(&dev_t[..1].iter().chain(&dev_t[2..]).collect::<Vec<_>>()) {
            assert_near("adam", b, a, 1e-6, 0.0).unwrap();
        }
    }
}

/// A moment that decays below the smallest normal f32 is stored as 0 on
/// every backend (kiln's one departure from torch's Adam: subnormals cost a
/// microcode assist per update on x86).
fn adam_flushes_subnormal_moments(dev: Device) {
    use kiln::tensor::ops::adam::{AdamConfig, AdamStep};
    let t = |v: &[f32]| Tensor::from_slice(v, &[3], Device::Cpu).unwrap();
    let (p, g) = (t(&[1.0, 1.0, 1.0]), t(&[0.0, 0.0, 0.0]));
    let (m, v) = (t(&[1.2e-38, 1.4e-38, 1e-30]), t(&[1e-30, 1.176e-38, 1e-20]));
    let step = AdamStep::new(AdamConfig::default(), 5);
    let on = |d: Device| -> Vec<Vec<f32>> {
        let ts: Vec<Tensor> = [&p, &g, &m, &v].iter().map(|x| x.to_device(d).unwrap().copy().unwrap()).collect();
        ts[0].adam_update(&ts[1], &ts[2], &ts[3], &step).unwrap();
        [&ts[2], &ts[3]].iter().map(|x| x.to_device(Device::Cpu).unwrap().to_vec::<f32>().unwrap()).collect()
    };
    let (cpu, other) = (on(Device::Cpu), on(dev));
    // m 1.2e-38 · 0.9 and v 1.176e-38 · 0.999 fall below 1.1755e-38: flushed; 1.4e-38 · 0.9 stays.
    assert_eq!((cpu[0][0], cpu[1][1]), (0.0, 0.0));
    assert!(cpu[0][1] > 1.2e-38 && cpu[1][0] > 0.0);
    assert_eq!(cpu, other, "{dev:?}");
}

fn errors_are_typed(dev: Device) {
    let x = Tensor::zeros(&[2, 3], DType::F64, Device::Cpu).unwrap();
    let err = x.to_device(dev).unwrap_err().to_string();
    assert!(err.contains("F64") && err.contains(&format!("{dev:?}")), "{err}");
    let a = Tensor::ones(&[2, 3], DType::F32, dev).unwrap();
    let b = Tensor::ones(&[2, 3], DType::F32, Device::Cpu).unwrap();
    let err = a.add(&b).unwrap_err().to_string();
    assert!(err.contains("device"), "{err}");
    let idx = Tensor::indices(&[0, 5], &[2], dev).unwrap();
    let err = a.index_select(1, &idx).unwrap_err().to_string();
    assert!(err.contains("index 5 is out of range"), "{err}");
    if dev == Device::Wgpu(0) {
        let d = kiln::tensor::gpu::wgpu_device(0).unwrap();
        assert!(!d.name().is_empty() && format!("{d:?}").contains(d.name()));
    } else {
        let d = kiln::tensor::cuda::cuda_device(0).unwrap();
        assert!(!d.name().is_empty() && format!("{d:?}").contains(d.name()));
    }
}

#[test]
fn every_shader_file_is_registered() {
    // Runs without an adapter: the registry, the files and the stems agree.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .filter(|s| s != "common")
        .collect();
    files.sort();
    assert_eq!(files, kiln::tensor::gpu::shader_stems().collect::<Vec<_>>());
    for stem in kiln::tensor::gpu::shader_stems() {
        let src = kiln::tensor::gpu::shader_source(stem, false).unwrap();
        assert!(src.contains("fn wg_flat") && src.contains("@compute"), "{stem}");
    }
}

fn dcgan_steps_match_the_cpu(dev: Device) {
    use kiln::gan::{Dcgan, DcganConfig};
    let cfg = DcganConfig { image_size: 16, ngf: 4, ndf: 4, nz: 8, ..Default::default() };
    let mut cpu = Dcgan::new(cfg.clone(), Device::Cpu, 3).unwrap();
    let mut gpu = Dcgan::new(cfg, dev, 3).unwrap();
    let mut rng = kiln::tensor::Rng::new(9);
    for step in 0..3 {
        let real = Tensor::uniform(&[6, 1, 16, 16], -1.0, 1.0, DType::F32, Device::Cpu, &mut rng).unwrap();
        let z = cpu.noise(6, &mut rng).unwrap();
        let a = cpu.train_step(&real, &z).unwrap();
        let b = gpu.train_step(&real.to_device(dev).unwrap(), &z.to_device(dev).unwrap()).unwrap();
        for (name, x, y) in [
            ("loss_d", a.loss_d, b.loss_d),
            ("loss_g", a.loss_g, b.loss_g),
            ("d_x", a.d_x, b.d_x),
            ("d_g_z1", a.d_g_z1, b.d_g_z1),
            ("d_g_z2", a.d_g_z2, b.d_g_z2),
        ] {
            assert!((x - y).abs() <= 1e-3 * (1.0 + x.abs()), "step {step} {name}: cpu {x} vs {dev:?} {y}");
        }
    }
    // The weights after three Adam steps agree too.
    let (pc, pg) = (cpu.g_store.trainable(), gpu.g_store.trainable());
    assert_eq!(pc.len(), pg.len());
    for ((name, a), (_, b)) in pc.iter().zip(&pg) {
        assert_near(name, &b.to_device(Device::Cpu).unwrap(), a, 1e-3, 0.0).unwrap();
    }
}

fn f16_storage_matmul_conv_and_casts(dev: Device) {
    if dev == Device::Wgpu(0) && !kiln::tensor::gpu::wgpu_device(0).unwrap().has_f16() {
        eprintln!("SKIP f16 on wgpu: the adapter has no SHADER_F16");
        return;
    }
    // The oracle runs in f64 on exactly the f16-rounded operands; the f16
    // result adds one rounding of the output (2^-11 relative) to f32 sums.
    let h = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
    let oracle = |t: &Tensor| h(t).to_dtype(DType::F64).unwrap();
    let close = |what: &str, got: &Tensor, want: &Tensor| {
        assert_eq!(got.dtype(), DType::F16, "{what} keeps f16 storage");
        assert_near(what, &got.to_device(Device::Cpu).unwrap().to_dtype(DType::F64).unwrap(), want, 2e-3, 0.0).unwrap();
    };
    for (m, k, n) in [(1, 1, 1), (17, 33, 70), (65, 130, 3)] {
        let (a, b) = (randn(&[2, m, k], 1), randn(&[k, n], 2));
        let got = h(&a).to_device(dev).unwrap().matmul(&h(&b).to_device(dev).unwrap()).unwrap();
        close(&format!("f16 matmul {m}x{k}x{n}"), &got, &oracle(&a).matmul(&oracle(&b)).unwrap());
    }
    let p = kiln::tensor::Conv2dParams { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 2 };
    let (x, w) = (randn(&[3, 4, 7, 6], 3), randn(&[6, 2, 3, 2], 4).mul_scalar(0.3).unwrap());
    let (xd, wd) = (h(&x).to_device(dev).unwrap(), h(&w).to_device(dev).unwrap());
    close("f16 conv2d", &xd.conv2d(&wd, None, p).unwrap(), &oracle(&x).conv2d(&oracle(&w), None, p).unwrap());
    // Backward on f16 storage: conv2d_bwd_input and conv2d_bwd_weight.
    let (xv, wv) = (Var::new(&xd).unwrap(), Var::new(&wd).unwrap());
    let y = xv.conv2d(&wv, None, p).unwrap();
    let gy = randn(y.shape(), 5);
    let grads = y.backward_with(&h(&gy).to_device(dev).unwrap(), false).unwrap();
    let (xo, wo) = (Var::new(&oracle(&x)).unwrap(), Var::new(&oracle(&w)).unwrap());
    let want = xo.conv2d(&wo, None, p).unwrap().backward_with(&oracle(&gy), false).unwrap();
    close("f16 conv2d_bwd_input", grads.get(&xv).unwrap(), want.get(&xo).unwrap());
    close("f16 conv2d_bwd_weight", grads.get(&wv).unwrap(), want.get(&wo).unwrap());
    // Casts round like the CPU's (nearest even); strided and odd-offset copies.
    let v = randn(&[5, 7], 6).mul_scalar(100.0).unwrap();
    let on_dev = v.to_dtype(DType::F32).unwrap().to_device(dev).unwrap().to_dtype(DType::F16).unwrap();
    assert_eq!(on_dev.to_vec_f64(), h(&v).to_vec_f64(), "f32 -> f16 cast");
    let t = on_dev.t().unwrap().narrow(0, 1, 5).unwrap().contiguous().unwrap();
    assert_eq!(t.to_vec_f64(), h(&v).t().unwrap().narrow(0, 1, 5).unwrap().to_vec_f64(), "strided f16 copy");
    let back = on_dev.to_dtype(DType::F32).unwrap().to_vec_f64();
    assert_eq!(back, h(&v).to_dtype(DType::F32).unwrap().to_vec_f64(), "f16 -> f32 cast");
    let big = Tensor::from_slice(&[1e6f32, -1e6, f32::NAN, 65504.0], &[4], dev).unwrap().to_dtype(DType::F16).unwrap();
    let b = big.to_vec_f64();
    assert!(b[0] == f64::INFINITY && b[1] == f64::NEG_INFINITY && b[2].is_nan() && b[3] == 65504.0, "{b:?}");
}
