//! kiln-flow's defining identities: every layer and both whole models
//! invert exactly (1e-10 in f64, 1e-5 relative in f32, also after training
//! steps and on each GPU backend), and every returned log-det equals
//! log|det J| of the full Jacobian built row by row with kiln's autograd.
//! bits/dim of an identity-initialised RealNVP against its closed form;
//! actnorm's data-dependent initialisation. The run loop's suite runs for
//! both flows in train.rs.

use kiln::flow::dequant::{Preprocess, bits_per_dim, dequantize};
use kiln::flow::layers::{ActNorm, Bound, ConvForm, Coupling, InvConv, Layer, Mask, Squeeze};
use kiln::flow::nets::{GlowNet, ResNet};
use kiln::flow::{Encoded, Glow, GlowConfig, RealNvp, RealNvpConfig};
use kiln::nn::{Init, VarStore};
use kiln::tensor::Rng;
use kiln::tensor::linalg;
use kiln::{DType, Device, Tensor, Var};

pub fn tiny_glow() -> GlowConfig {
    GlowConfig { levels: 2, depth: 2, hidden: 8, image_size: 8, warmup: 2, ..Default::default() }
}

pub fn tiny_realnvp() -> RealNvpConfig {
    RealNvpConfig { hidden: 8, blocks: 1, image_size: 8, warmup: 2, ..Default::default() }
}

/// Moves every parameter off its initial value (zero-initialised last
/// convs would make couplings and priors trivial).
fn perturb(store: &VarStore, seed: u64, std: f64) {
    let mut rng = Rng::new(seed);
    for (_, v) in store.trainable() {
        let noise = Tensor::randn(v.shape(), 0.0, std, v.dtype(), v.device(), &mut rng).unwrap();
        v.set(&v.add(&noise).unwrap()).unwrap();
    }
}

fn randn(shape: &[usize], dtype: DType, device: Device, seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, dtype, device, &mut Rng::new(seed)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn max_abs(a: &Tensor) -> f64 {
    a.to_vec_f64().iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// log|det ∂f/∂x| at one input (1, …) from the Jacobian, one backward pass a row.
fn brute_log_det(x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) -> f64 {
    let var = Var::new(x).unwrap();
    let y = f(&var).reshape(&[usize::MAX]).unwrap();
    let d = x.numel();
    assert_eq!(y.numel(), d, "the map must be square");
    let mut jac = Vec::with_capacity(d * d);
    for i in 0..d {
        let g = y.narrow(0, i, 1).unwrap().sum_all().unwrap().backward().unwrap();
        let row = g.get(&var).map(|t| t.to_vec_f64()).unwrap_or_else(|| vec![0.0; d]);
        jac.extend(row);
    }
    linalg::slogdet(&jac, d).1
}

/// The layers under test, built in one store: (name, layer, input (c, h, w)).
fn layers(store: &VarStore) -> Vec<(&'static str, Box<dyn Layer>, [usize; 3])> {
    let p = store.root();
    let tanh =
        |name: &str, out: usize| Bound::Tanh(p.sub(name).param("scale", &[1, out, 1, 1], Init::Const(1.0)).unwrap());
    let glow_net = |name: &str, cin, cout| Box::new(GlowNet::new(&p.sub(name), cin, 8, cout).unwrap());
    let res_net = |name: &str, cin, cout| Box::new(ResNet::new(&p.sub(name), cin, 8, 1, cout).unwrap());
    let coupling = |mask, bound, net: Box<dyn kiln::nn::Module>| -> Box<dyn Layer> {
        Box::new(Coupling::new(&p, mask, bound, net, 4, 4).unwrap())
    };
    let out: Vec<(&'static str, Box<dyn Layer>, [usize; 3])> = vec![
        ("squeeze", Box::new(Squeeze), [2, 4, 4]),
        ("actnorm", Box::new(ActNorm::new(&p.sub("actnorm"), 3).unwrap()), [3, 4, 4]),
        ("invconv", Box::new(InvConv::new(&p.sub("invconv"), 4, ConvForm::Lu).unwrap()), [4, 2, 2]),
        ("invconv odd", Box::new(InvConv::new(&p.sub("invconv3"), 3, ConvForm::Lu).unwrap()), [3, 2, 2]),
        ("plain invconv", Box::new(InvConv::new(&p.sub("plain"), 4, ConvForm::Plain).unwrap()), [4, 2, 2]),
        ("glow coupling", coupling(Mask::Channel { flip: false }, Bound::Sigmoid, glow_net("g1", 2, 4)), [4, 4, 4]),
        (
            "flipped odd coupling",
            coupling(Mask::Channel { flip: true }, Bound::Sigmoid, glow_net("g2", 1, 4)),
            [3, 4, 4],
        ),
        (
            "tanh channel coupling",
            coupling(Mask::Channel { flip: false }, tanh("t1", 2), res_net("r1", 2, 4)),
            [4, 4, 4],
        ),
        ("checkerboard 0", coupling(Mask::Checkerboard { parity: 0 }, tanh("t2", 2), res_net("r2", 2, 4)), [2, 4, 4]),
        ("checkerboard 1", coupling(Mask::Checkerboard { parity: 1 }, tanh("t3", 1), res_net("r3", 1, 2)), [1, 4, 4]),
    ];
    perturb(store, 7, 0.2);
    out
}

#[test]
fn every_layer_inverts_exactly_and_its_log_det_is_the_jacobians() {
    let store = VarStore::new(Device::Cpu, DType::F64, 1);
    for (name, layer, [c, h, w]) in layers(&store) {
        let x = randn(&[2, c, h, w], DType::F64, Device::Cpu, 3);
        let (y, log_det) = layer.forward(&x, false).unwrap();
        let back = layer.inverse(&y).unwrap();
        assert!(max_abs_diff(&back, &x) < 1e-10, "{name}: inverse off by {}", max_abs_diff(&back, &x));
        if name != "squeeze" {
            assert!(max_abs_diff(&y, &x) > 1e-2, "{name} is the identity: the test would prove nothing");
        }
        let x0 = x.narrow(0, 0, 1).unwrap();
        let brute = brute_log_det(&x0, &|v| layer.forward(v, false).unwrap().0);
        let ld = log_det.to_vec_f64()[0];
        assert!((brute - ld).abs() < 1e-8 * brute.abs().max(1.0), "{name}: log-det {ld}, Jacobian says {brute}");
        if !name.starts_with("squeeze") && !name.starts_with("invconv") {
            assert!(brute.abs() > 1e-3, "{name}: a log-det of 0 proves nothing");
        }
    }
}

#[test]
fn every_layer_inverts_in_f32() {
    let store = VarStore::new(Device::Cpu, DType::F32, 1);
    for (name, layer, [c, h, w]) in layers(&store) {
        let x = randn(&[2, c, h, w], DType::F32, Device::Cpu, 3);
        let back = layer.inverse(&layer.forward(&x, false).unwrap().0).unwrap();
        let rel = max_abs_diff(&back, &x) / max_abs(&x);
        assert!(rel < 1e-5, "{name}: f32 inverse off by {rel} relative");
    }
}

#[test]
fn the_logit_preprocessing_log_det_is_the_jacobians() {
    let x = Tensor::rand(&[1, 1, 3, 3], DType::F64, Device::Cpu, &mut Rng::new(2)).unwrap();
    let pre = Preprocess::Logit { alpha: 0.05 };
    let (y, ld) = pre.forward(&x).unwrap();
    assert!(max_abs_diff(&pre.inverse(&y).unwrap(), &x) < 1e-12);
    let brute = brute_log_det(&x, &|v| pre.forward(v).unwrap().0);
    assert!((brute - ld.to_vec_f64()[0]).abs() < 1e-9, "{brute} vs {:?}", ld.to_vec_f64());
}

#[test]
fn actnorm_initialises_from_the_batch() {
    let store = VarStore::new(Device::Cpu, DType::F64, 1);
    let layer = ActNorm::new(&store.root(), 3).unwrap();
    let x = randn(&[8, 3, 4, 4], DType::F64, Device::Cpu, 4).affine(3.0, 2.0).unwrap();
    let (y, _) = layer.forward(&x, true).unwrap();
    let mean = y.mean(&[0, 2, 3], false).unwrap().to_vec_f64();
    let var = y.var(&[0, 2, 3], false, false).unwrap().to_vec_f64();
    assert!(mean.iter().all(|m| m.abs() < 1e-12), "{mean:?}");
    assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-4), "{var:?}");
    // Outside the init pass the statistics stay as set.
    let (z, _) = layer.forward(&x.affine(2.0, 0.0).unwrap(), false).unwrap();
    assert!(z.var(&[0, 2, 3], false, false).unwrap().to_vec_f64().iter().all(|v| (v - 4.0).abs() < 1e-3));
}

/// Both tiny flows in `dtype`, weights perturbed by N(0, std²), actnorm initialised.
fn models(dtype: DType, device: Device, std: f64) -> Vec<(&'static str, kiln::flow::Flow)> {
    let glow = Glow::with_dtype(tiny_glow(), device, dtype, 5).unwrap().flow;
    let nvp = RealNvp::with_dtype(tiny_realnvp(), device, dtype, 6).unwrap().flow;
    let init = Tensor::rand(&[4, 1, 8, 8], dtype, device, &mut Rng::new(8)).unwrap();
    let mut out = vec![];
    for (name, flow) in [("glow", glow), ("realnvp", nvp)] {
        flow.initialize(&init).unwrap();
        assert!(flow.is_initialized().unwrap());
        perturb(&flow.store, 9, std);
        out.push((name, flow));
    }
    out
}

fn flat_latents(e: &Encoded) -> Tensor {
    let flat: Vec<Tensor> = e.latents.iter().map(|z| z.reshape(&[z.shape()[0], usize::MAX]).unwrap()).collect();
    Tensor::cat(&flat.iter().collect::<Vec<_>>(), 1).unwrap()
}

#[test]
fn whole_flows_invert_exactly_and_their_log_det_is_the_jacobians() {
    for (name, flow) in models(DType::F64, Device::Cpu, 0.2) {
        let x = randn(&[2, 1, 8, 8], DType::F64, Device::Cpu, 10);
        let enc = flow.net.encode(&x, false).unwrap();
        assert_eq!(enc.latents.len(), 2, "{name}: one split and the top");
        let back = flow.net.decode(&enc.latents).unwrap();
        assert!(max_abs_diff(&back, &x) < 1e-10, "{name}: inverse off by {}", max_abs_diff(&back, &x));
        let x0 = x.narrow(0, 0, 1).unwrap();
        let brute = brute_log_det(&x0, &|v| flat_latents(&flow.net.encode(v, false).unwrap()));
        let ld = enc.log_det.to_vec_f64()[0];
        assert!((brute - ld).abs() < 1e-8 * brute.abs().max(1.0), "{name}: log-det {ld}, Jacobian says {brute}");
        assert!(brute.abs() > 1e-2, "{name}: log-det {brute} too small to prove anything");
        // Sampling runs the same inverse: a sample re-encodes to finite log-densities.
        let s = flow.net.sample(3, 0.7, &x, &mut Rng::new(1)).unwrap();
        assert!(flow.net.encode(&s, false).unwrap().log_prob().unwrap().to_vec_f64().iter().all(|v| v.is_finite()));
    }
}

fn digits(n: usize, seed: u64) -> Tensor {
    // 8-bit values as the loader gives them: k/127.5 − 1.
    let mut rng = Rng::new(seed);
    let v: Vec<f64> = (0..n * 64).map(|_| rng.below(256) as f64 / 127.5 - 1.0).collect();
    Tensor::from_f64(&v, &[n, 1, 8, 8], DType::F32, Device::Cpu).unwrap()
}

#[test]
fn flows_invert_in_f32_after_training_steps() {
    let mut glow = Glow::new(tiny_glow(), Device::Cpu, 1).unwrap();
    let mut nvp = RealNvp::new(tiny_realnvp(), Device::Cpu, 1).unwrap();
    let mut rng = Rng::new(2);
    for flow in [&mut glow.flow, &mut nvp.flow] {
        let first = flow.train_step(&digits(16, 3), &mut rng).unwrap().bpd;
        let mut last = first;
        for _ in 0..8 {
            last = flow.train_step(&digits(16, 3), &mut rng).unwrap().bpd;
        }
        assert!(last < first, "bits/dim {first} -> {last} on one repeated batch");
        let y = flow.pre.forward(&dequantize(&digits(4, 4), &mut rng).unwrap()).unwrap().0;
        let back = flow.net.decode(&flow.net.encode(&y, false).unwrap().latents).unwrap();
        let rel = max_abs_diff(&back, &y) / max_abs(&y);
        assert!(rel < 1e-5, "f32 inverse after training off by {rel} relative");
    }
}

#[test]
fn realnvp_at_initialisation_has_the_closed_form_bits_per_dim() {
    // Zero last convs make every coupling the identity, squeeze permutes and
    // both priors are N(0, I): log p(x) = Σ log N(logit(p); 0, 1) + Σ log|d logit(p)/dx|.
    let nvp = RealNvp::with_dtype(tiny_realnvp(), Device::Cpu, DType::F64, 1).unwrap();
    let x = dequantize(&digits(3, 5).to_dtype(DType::F64).unwrap(), &mut Rng::new(6)).unwrap();
    let got = bits_per_dim(&nvp.flow.log_prob(&x).unwrap(), 64).unwrap().to_vec_f64();
    let a = 0.05;
    for (i, g) in got.iter().enumerate() {
        let mut log_p = 0.0;
        for &v in &x.to_vec_f64()[i * 64..(i + 1) * 64] {
            let p = a + (1.0 - 2.0 * a) * v;
            let y = (p / (1.0 - p)).ln();
            log_p +=
                -0.5 * y * y - 0.5 * (2.0 * std::f64::consts::PI).ln() + (1.0 - 2.0 * a).ln() - (p * (1.0 - p)).ln();
        }
        let want = -log_p / (64.0 * std::f64::consts::LN_2) + 8.0;
        assert!((g - want).abs() < 1e-10, "image {i}: {g} vs {want}");
    }
}

#[test]
fn dequantisation_keeps_each_value_in_its_bin() {
    let images = digits(2, 7);
    let x = dequantize(&images, &mut Rng::new(1)).unwrap().to_vec_f64();
    for (k, u) in images.to_vec_f64().iter().zip(&x) {
        let bin = ((k + 1.0) * 127.5).round();
        assert!(u * 256.0 >= bin && u * 256.0 < bin + 1.0, "{k} -> {u}");
    }
}

#[test]
fn flows_on_each_gpu_backend_invert_and_match_the_cpu() {
    // Milder weights than the f64 checks: at N(0, 0.2²) the perturbed flows
    // expand 40× and their f32 inverses amplify rounding past 1e-5 on lavapipe
    // (each layer alone inverts to 1e-5 there; see the test above).
    let cpu = models(DType::F32, Device::Cpu, 0.05);
    let devices = [crate::gpu_parity::wgpu(), crate::gpu_parity::cuda()];
    for device in devices.into_iter().flatten() {
        for ((name, flow), (_, on_cpu)) in models(DType::F32, device, 0.05).iter().zip(&cpu) {
            let x = randn(&[2, 1, 8, 8], DType::F32, Device::Cpu, 10);
            let enc = flow.net.encode(&x.to_device(device).unwrap(), false).unwrap();
            let want = on_cpu.net.encode(&x, false).unwrap().log_prob().unwrap().to_vec_f64();
            for (g, w) in enc.log_prob().unwrap().to_vec_f64().iter().zip(&want) {
                assert!((g - w).abs() < 1e-3 * w.abs().max(1.0), "{name} on {device:?}: log p {g} vs cpu {w}");
            }
            let back = flow.net.decode(&enc.latents).unwrap().to_device(Device::Cpu).unwrap();
            let rel = max_abs_diff(&back, &x) / max_abs(&x);
            assert!(rel < 1e-5, "{name} on {device:?}: inverse off by {rel} relative");
        }
    }
}

// Right after actnorm's initialisation the gradients of its bias and of the
// top prior's mean are 0 up to rounding (1e-8), and Adam turns their sign into
// a full ±lr step, so the backends' runs part by the learning rate, not by any
// kernel; the first step's gradients agree to 1e-6. A small lr keeps that
// noise under the comparison's 1e-3 while every op still runs.
#[test]
fn glow_gpu_runs_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<Glow>(&GlowConfig { lr: 1e-5, ..tiny_glow() }, "glow");
}

#[test]
fn realnvp_gpu_runs_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<RealNvp>(&RealNvpConfig { lr: 1e-5, ..tiny_realnvp() }, "realnvp");
}

#[test]
fn every_layer_on_each_gpu_backend_inverts_and_matches_the_cpu() {
    let cpu_store = VarStore::new(Device::Cpu, DType::F32, 1);
    let cpu = layers(&cpu_store);
    let devices = [crate::gpu_parity::wgpu(), crate::gpu_parity::cuda()];
    for device in devices.into_iter().flatten() {
        let store = VarStore::new(device, DType::F32, 1);
        for ((name, layer, [c, h, w]), (_, on_cpu, _)) in layers(&store).iter().zip(&cpu) {
            // A view of half the channels, as a split leaves it.
            let wide = randn(&[2, 2 * c, *h, *w], DType::F32, Device::Cpu, 3);
            let x = wide.narrow(1, 0, *c).unwrap();
            let (y, ld) = layer.forward(&wide.to_device(device).unwrap().narrow(1, 0, *c).unwrap(), false).unwrap();
            let (want_y, want_ld) = on_cpu.forward(&x, false).unwrap();
            let err = max_abs_diff(&y.to_device(Device::Cpu).unwrap(), &want_y);
            assert!(err < 1e-4 * max_abs(&want_y).max(1.0), "{name} on {device:?}: forward off by {err}");
            let err = max_abs_diff(&ld.to_device(Device::Cpu).unwrap(), &want_ld);
            assert!(err < 1e-4 * max_abs(&want_ld).max(1.0), "{name} on {device:?}: log-det off by {err}");
            let y_view = Tensor::cat(&[&y, &y], 1).unwrap().narrow(1, y.shape()[1], y.shape()[1]).unwrap();
            for (how, y) in [("", y.clone()), (" of a view", y_view)] {
                let back = layer.inverse(&y).unwrap().to_device(Device::Cpu).unwrap();
                let rel = max_abs_diff(&back, &x) / max_abs(&x);
                assert!(rel < 1e-5, "{name} on {device:?}: inverse{how} off by {rel} relative");
            }
        }
    }
}

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch/flow.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fixture_tensor(v: &serde_json::Value) -> Tensor {
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    Tensor::from_f64(&data, &shape, DType::F64, Device::Cpu).unwrap()
}

#[test]
fn bits_per_dim_match_pytorch_for_fixed_weights() {
    let doc = fixture();
    let glow = Glow::with_dtype(tiny_glow(), Device::Cpu, DType::F64, 0).unwrap().flow;
    let nvp = RealNvp::with_dtype(tiny_realnvp(), Device::Cpu, DType::F64, 0).unwrap().flow;
    for (key, flow) in [("glow", glow), ("realnvp", nvp)] {
        let case = &doc[key];
        let tensors = case["tensors"].as_object().unwrap();
        let named = flow.store.named_tensors();
        assert_eq!(
            named.len(),
            tensors.len(),
            "{key}: kiln has {} tensors, the fixture {}",
            named.len(),
            tensors.len()
        );
        for (name, t) in named {
            let v = tensors.get(&name).unwrap_or_else(|| panic!("{key}: {name} is not in the fixture"));
            t.assign(&fixture_tensor(v)).unwrap_or_else(|e| panic!("{key}: {name}: {e}"));
        }
        assert!(flow.is_initialized().unwrap());
        let x = fixture_tensor(&case["x"]);
        let (y, pre) = flow.pre.forward(&x).unwrap();
        let enc = flow.net.encode(&y, false).unwrap();
        let got_bpd = bits_per_dim(&flow.log_prob(&x).unwrap(), 64).unwrap().to_vec_f64();
        let log_det = enc.log_det.add(&pre).unwrap().to_vec_f64();
        for (what, got, want) in [
            ("bits/dim", got_bpd, &case["bpd"]),
            ("log-det", log_det, &case["log_det"]),
            ("log prior", enc.log_prior.to_vec_f64(), &case["log_prior"]),
        ] {
            for (g, w) in got.iter().zip(fixture_tensor(want).to_vec_f64()) {
                assert!((g - w).abs() < 1e-9 * w.abs().max(1.0), "{key} {what}: kiln {g}, PyTorch {w}");
            }
        }
    }
}

#[test]
fn the_reversible_backward_gives_the_stored_activation_gradients() {
    for (name, flow) in models(DType::F64, Device::Cpu, 0.1) {
        let x = dequantize(&digits(3, 11).to_dtype(DType::F64).unwrap(), &mut Rng::new(12)).unwrap();
        let d = flow.dims();
        let params: Vec<Var> = flow.store.trainable().into_iter().map(|(_, v)| v).collect();
        let loss = bits_per_dim(&flow.log_prob(&x).unwrap(), d).unwrap().mean_all().unwrap();
        let want = loss.backward().unwrap();
        let (y, pre) = flow.pre.forward(&x).unwrap();
        let coef = -1.0 / (3.0 * d as f64 * std::f64::consts::LN_2);
        let (log_p, got) = kiln::flow::reversible::reversible_grads(&flow.net, &y, coef, &params).unwrap();
        let bpd = bits_per_dim(&log_p.add(&pre).unwrap(), d).unwrap().mean_all().unwrap().to_scalar().unwrap();
        assert!((bpd - loss.to_scalar().unwrap()).abs() < 1e-12, "{name}: loss {bpd}");
        let mut compared = 0;
        for (pname, p) in flow.store.trainable() {
            let (w, g) = (want.get(&p), got.get(&p));
            match (w, g) {
                (Some(w), Some(g)) => {
                    let err = max_abs_diff(w, g);
                    assert!(err < 1e-9 * max_abs(w).max(1e-3), "{name} {pname}: gradients differ by {err}");
                    compared += 1;
                }
                (None, None) => {}
                _ => panic!("{name} {pname}: one backward has a gradient, the other none"),
            }
        }
        assert_eq!(compared, params.len(), "{name}: every parameter has a gradient");
    }
}
