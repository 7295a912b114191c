//! Reference values computed once with PyTorch (scripts/torch_fixtures.py,
//! float64) and committed under tests/fixtures/torch/. Each case checks the
//! forward outputs and the gradients of Σ y·gy, once through the fused
//! first-order backward and once through the differentiable (create-graph)
//! path, so both must match PyTorch.

use std::collections::HashMap;

use kiln::tensor::loss::{self, Reduction};
use kiln::tensor::{Conv2dParams, ConvTranspose2dParams, Pool2dParams};
use kiln::{Device, Tensor, Var};
use serde_json::Value;

use crate::common::{assert_close, t64};

#[path = "torch_semantics.rs"]
mod semantics;

const ATOL: f64 = 1e-9;
const RTOL: f64 = 1e-7;

pub(crate) fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
    t64(&data, &shape)
}

pub(crate) fn pair(v: &Value) -> [usize; 2] {
    let a = v.as_array().unwrap();
    [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize]
}

pub(crate) fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn reduction(p: &Value) -> Reduction {
    match p["reduction"].as_str().unwrap() {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        _ => Reduction::None,
    }
}

fn class_indices(t: &Tensor) -> Tensor {
    let v: Vec<i64> = t.to_vec_f64().iter().map(|&x| x as i64).collect();
    Tensor::indices(&v, t.shape(), Device::Cpu).unwrap()
}

/// Runs one case's op on `x` (inputs by name) and returns its named outputs.
fn run(op: &str, p: &Value, x: &HashMap<String, Tensor>) -> kiln::Result<Vec<(String, Tensor)>> {
    let get = |k: &str| x.get(k);
    let y = |t: Tensor| Ok(vec![("y".to_string(), t)]);
    match op {
        "conv2d" => {
            let params = Conv2dParams {
                stride: pair(&p["stride"]),
                padding: pair(&p["padding"]),
                dilation: pair(&p["dilation"]),
                groups: p["groups"].as_u64().unwrap() as usize,
            };
            y(x["x"].conv2d(&x["w"], get("b"), params)?)
        }
        "conv_transpose2d" => {
            let params = ConvTranspose2dParams {
                stride: pair(&p["stride"]),
                padding: pair(&p["padding"]),
                output_padding: pair(&p["output_padding"]),
                dilation: pair(&p["dilation"]),
                groups: p["groups"].as_u64().unwrap() as usize,
            };
            y(x["x"].conv_transpose2d(&x["w"], get("b"), params)?)
        }
        "batch_norm_train_sequence" => {
            let c = x["x0"].shape()[1];
            let rm = Tensor::zeros(&[c], kiln::DType::F64, Device::Cpu)?;
            let rv = Tensor::ones(&[c], kiln::DType::F64, Device::Cpu)?;
            let (m, eps) = (p["momentum"].as_f64().unwrap(), p["eps"].as_f64().unwrap());
            let mut out = vec![];
            for step in 0..3 {
                let yk = x[&format!("x{step}")].batch_norm(Some(&rm), Some(&rv), get("w"), get("b"), true, m, eps)?;
                out.push((format!("y{step}"), yk));
                out.push((format!("running_mean_{}", step + 1), rm.copy()?));
                out.push((format!("running_var_{}", step + 1), rv.copy()?));
            }
            // The gradient fixture is of the last step: make it "y".
            let last = out.iter().find(|(n, _)| n == "y2").unwrap().1.clone();
            out.push(("y".into(), last));
            Ok(out)
        }
        "batch_norm_eval" => y(x["x"].batch_norm(
            Some(&x["running_mean"]),
            Some(&x["running_var"]),
            get("w"),
            get("b"),
            false,
            0.1,
            p["eps"].as_f64().unwrap(),
        )?),
        "layer_norm" => {
            y(x["x"].layer_norm(&usizes(&p["normalized_shape"]), get("w"), get("b"), p["eps"].as_f64().unwrap())?)
        }
        "group_norm" => y(x["x"].group_norm(
            p["groups"].as_u64().unwrap() as usize,
            get("w"),
            get("b"),
            p["eps"].as_f64().unwrap(),
        )?),
        "sdpa" => y(Tensor::scaled_dot_product_attention(
            &x["q"],
            &x["k"],
            &x["v"],
            get("mask"),
            p["causal"].as_bool().unwrap(),
            p["scale"].as_f64(),
        )?),
        "gelu" if p["approximate"] == "tanh" => y(x["x"].gelu_tanh()?),
        "gelu" => y(x["x"].gelu()?),
        "elu" => y(x["x"].elu(p["alpha"].as_f64().unwrap())?),
        "leaky_relu" => y(x["x"].leaky_relu(p["negative_slope"].as_f64().unwrap())?),
        "softplus" => y(x["x"].softplus(p["beta"].as_f64().unwrap(), p["threshold"].as_f64().unwrap())?),
        "silu" => y(x["x"].silu()?),
        "sigmoid" => y(x["x"].sigmoid()?),
        "tanh" => y(x["x"].tanh()?),
        "clamp" => y(x["x"].clamp(p["min"].as_f64().unwrap(), p["max"].as_f64().unwrap())?),
        "powf" => y(x["x"].powf(p["exponent"].as_f64().unwrap())?),
        "rsqrt" => y(x["x"].rsqrt()?),
        "log_sigmoid" => y(x["x"].log_sigmoid()?),
        "erf" => y(x["x"].erf()?),
        "softmax" => y(x["x"].softmax(p["dim"].as_u64().unwrap() as usize)?),
        "log_softmax" => y(x["x"].log_softmax(p["dim"].as_u64().unwrap() as usize)?),
        "logsumexp" => y(x["x"].logsumexp(&usizes(&p["dims"]), p["keepdim"].as_bool().unwrap())?),
        "mean" => y(x["x"].mean(&usizes(&p["dims"]), p["keepdim"].as_bool().unwrap())?),
        "var" => {
            y(x["x"].var(&usizes(&p["dims"]), p["unbiased"].as_bool().unwrap(), p["keepdim"].as_bool().unwrap())?)
        }
        "max_dim" => {
            let (v, i) = x["x"].max_dim(p["dim"].as_u64().unwrap() as usize, p["keepdim"].as_bool().unwrap())?;
            Ok(vec![("y".into(), v), ("indices".into(), i)])
        }
        "max_pool2d" | "avg_pool2d" => {
            let params = Pool2dParams {
                kernel: pair(&p["kernel"]),
                stride: pair(&p["stride"]),
                padding: pair(&p["padding"]),
                dilation: if op == "max_pool2d" { pair(&p["dilation"]) } else { [1, 1] },
                ceil_mode: p["ceil_mode"].as_bool().unwrap(),
                count_include_pad: p["count_include_pad"].as_bool().unwrap_or(true),
            };
            if op == "avg_pool2d" {
                return y(x["x"].avg_pool2d(params)?);
            }
            let (v, i) = x["x"].max_pool2d_with_indices(params)?;
            Ok(vec![("y".into(), v), ("indices".into(), i)])
        }
        "upsample_nearest2d" => y(x["x"].upsample_nearest2d(pair(&p["size"]))?),
        "bce_with_logits" => {
            y(loss::binary_cross_entropy_with_logits(&x["x"], &x["t"], get("weight"), get("pos_weight"), reduction(p))?)
        }
        "bce" => y(loss::binary_cross_entropy(&x["x"], &x["t"], get("weight"), reduction(p))?),
        "mse" => y(loss::mse_loss(&x["x"], &x["t"], reduction(p))?),
        "l1" => y(loss::l1_loss(&x["x"], &x["t"], reduction(p))?),
        "cross_entropy" => {
            let args = loss::CrossEntropy {
                label_smoothing: p["label_smoothing"].as_f64().unwrap(),
                reduction: reduction(p),
                ..Default::default()
            };
            y(loss::cross_entropy(&x["x"], &class_indices(&x["t"]), args)?)
        }
        "cross_entropy_args" => {
            let args = loss::CrossEntropy {
                weight: get("weight"),
                ignore_index: p["ignore_index"].as_i64().unwrap(),
                label_smoothing: p["label_smoothing"].as_f64().unwrap(),
                reduction: reduction(p),
            };
            y(loss::cross_entropy(&x["x"], &class_indices(&x["t"]), args)?)
        }
        "gaussian_kl" => y(loss::gaussian_kl(&x["mu"], &x["logvar"])?),
        "inverse" => y(x["x"].inverse()?),
        "slogdet" => {
            let (sign, log) = x["x"].slogdet()?;
            Ok(vec![("y".into(), log), ("sign".into(), sign)])
        }
        other => semantics::run(other, p, x),
    }
}

fn check_file(name: &str) -> usize {
    check_file_with(name, run)
}

/// A case's op on its named inputs, returning named outputs.
pub(crate) type Runner = fn(&str, &Value, &HashMap<String, Tensor>) -> kiln::Result<Vec<(String, Tensor)>>;

/// Checks every case of tests/fixtures/torch/`name`.json with `runner`.
pub(crate) fn check_file_with(name: &str, runner: Runner) -> usize {
    let path = format!("{}/tests/fixtures/torch/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    for case in cases {
        let cname = case["name"].as_str().unwrap();
        let op = case["op"].as_str().unwrap();
        let grads_want = case.get("grads").and_then(Value::as_object);
        for create_graph in [false, true] {
            let mut vars: HashMap<String, Var> = HashMap::new();
            let mut inputs: HashMap<String, Tensor> = HashMap::new();
            for (k, v) in case["inputs"].as_object().unwrap() {
                let t = tensor(v);
                // Class targets are indices, never differentiated.
                if grads_want.is_some_and(|g| g.contains_key(k)) {
                    let var = Var::new(&t).unwrap();
                    inputs.insert(k.clone(), var.as_tensor().clone());
                    vars.insert(k.clone(), var);
                } else {
                    inputs.insert(k.clone(), t);
                }
            }
            let outs = runner(op, &case["params"], &inputs).unwrap_or_else(|e| panic!("{cname}: {e}"));
            let by_name: HashMap<&str, &Tensor> = outs.iter().map(|(n, t)| (n.as_str(), t)).collect();
            for (k, want) in case["outputs"].as_object().unwrap() {
                let got = by_name.get(k.as_str()).unwrap_or_else(|| panic!("{cname}: no output {k}"));
                let want = tensor(want);
                assert_eq!(got.shape(), want.shape(), "{cname}: output {k} shape");
                assert_close(&format!("{cname}: output {k}"), &got.to_vec_f64(), &want.to_vec_f64(), ATOL, RTOL);
            }
            let Some(grads_want) = grads_want else {
                continue;
            };
            let y = by_name["y"];
            let s = y.mul(&inputs["gy"]).unwrap().sum_all().unwrap();
            let grads = if create_graph { s.backward_create_graph() } else { s.backward() }.unwrap();
            for (k, want) in grads_want {
                let got = grads.get(&vars[k]).unwrap_or_else(|| panic!("{cname}: no gradient for {k}"));
                let want = tensor(want);
                assert_eq!(got.shape(), want.shape(), "{cname}: grad {k} shape");
                let what = format!("{cname}: grad {k} (create_graph = {create_graph})");
                assert_close(&what, &got.to_vec_f64(), &want.to_vec_f64(), ATOL, RTOL);
            }
        }
    }
    cases.len()
}

#[test]
fn torch_conv2d_and_conv_transpose2d() {
    assert!(check_file("conv") >= 20);
}

#[test]
fn torch_batch_norm_layer_norm_group_norm() {
    assert!(check_file("norm") >= 10);
}

#[test]
fn torch_inverse_and_slogdet() {
    assert!(check_file("linalg") >= 8);
}

#[test]
fn torch_attention() {
    assert!(check_file("attention") >= 10);
}

#[test]
fn torch_elementwise() {
    assert!(check_file("elementwise") >= 15);
}

#[test]
fn torch_reductions_and_softmax() {
    assert!(check_file("reduce") >= 20);
}

#[test]
fn torch_pooling_and_upsampling() {
    assert!(check_file("pool") >= 15);
}

/// Issue 24's edge cases and arguments (scripts/torch_semantics_fixture.py).
#[test]
fn torch_semantics_edge_cases() {
    assert!(check_file("semantics") >= 80);
}

#[test]
fn torch_losses() {
    assert!(check_file("loss") >= 20);
}

/// The DCGAN generator and discriminator at 16×16 with PyTorch's weights
/// (module names as pytorch/examples), in training and evaluation mode.
#[test]
fn torch_dcgan_forward_and_backward() {
    use kiln::gan::DcganConfig;
    use kiln::gan::dcgan::{discriminator, generator};
    use kiln::nn::{Module, VarStore};

    let path = format!("{}/tests/fixtures/torch/dcgan.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (name, p) = (case["name"].as_str().unwrap(), &case["params"]);
        let num = |k: &str| p[k].as_u64().unwrap_or(1) as usize;
        let cfg = DcganConfig {
            nz: num("nz"),
            ngf: num("ngf"),
            ndf: num("ndf"),
            nc: 1,
            image_size: num("image_size"),
            ..Default::default()
        };
        let vs = VarStore::new(Device::Cpu, kiln::DType::F64, 0);
        let is_gen = case["op"] == "dcgan_generator";
        let net =
            if is_gen { generator(&vs.root().sub("main"), &cfg) } else { discriminator(&vs.root().sub("main"), &cfg) }
                .unwrap();
        let inputs = case["inputs"].as_object().unwrap();
        let stored: HashMap<String, Tensor> = vs.named_tensors().into_iter().collect();
        for (k, t) in &stored {
            if let Some(v) = inputs.get(k) {
                t.assign(&tensor(v)).unwrap();
            } else {
                assert!(
                    k.contains("running") || k.ends_with("num_batches_tracked"),
                    "{name}: fixture lacks parameter {k}"
                );
            }
        }
        let input_name = if is_gen { "z" } else { "x" };
        let x = Var::new(&tensor(&inputs[input_name])).unwrap();
        let train = p["train"].as_bool().unwrap();
        let y = net.forward(&x, train).unwrap();
        let outputs = case["outputs"].as_object().unwrap();
        assert_close(&format!("{name}: y"), &y.to_vec_f64(), &tensor(&outputs["y"]).to_vec_f64(), ATOL, RTOL);
        for (k, want) in outputs.iter().filter(|(k, _)| k.contains("running")) {
            assert_close(&format!("{name}: {k}"), &stored[k].to_vec_f64(), &tensor(want).to_vec_f64(), ATOL, RTOL);
        }
        let Some(grads_want) = case.get("grads").and_then(Value::as_object) else { continue };
        let grads = y.mul(&tensor(&inputs["gy"])).unwrap().sum_all().unwrap().backward().unwrap();
        let vars: HashMap<String, kiln::Var> = vs.trainable().into_iter().collect();
        for (k, want) in grads_want {
            let got = if k == input_name { grads.get(&x) } else { grads.get(&vars[k]) }
                .unwrap_or_else(|| panic!("{name}: no grad {k}"));
            assert_close(&format!("{name}: grad {k}"), &got.to_vec_f64(), &tensor(want).to_vec_f64(), ATOL, RTOL);
        }
    }
}
