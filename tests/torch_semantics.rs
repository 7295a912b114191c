//! PyTorch's behaviour at the edges where kiln once differed: the runner for
//! the fixture cases of scripts/torch_semantics_fixture.py (checked by
//! `torch_semantics_edge_cases` in torch_reference.rs), and the cases whose
//! values JSON cannot hold (NaN, ±inf), pinned here. Each test names the
//! PyTorch 2.15 behaviour it pins.

use std::collections::HashMap;

use kiln::nn::{BatchNorm2d, Module, VarStore};
use kiln::tensor::loss::{self, Reduction};
use kiln::tensor::{GradOptions, InterpolateTo, NearestMode};
use kiln::{DType, Device, Tensor, Var};
use serde_json::Value;

use super::{pair, usizes};
use crate::common::t64;

fn ord(v: &Value) -> f64 {
    match v.as_str() {
        Some("inf") => f64::INFINITY,
        Some("-inf") => f64::NEG_INFINITY,
        _ => v.as_f64().unwrap(),
    }
}

fn dims_keep(p: &Value) -> (Vec<usize>, bool) {
    (usizes(&p["dims"]), p["keepdim"].as_bool().unwrap())
}

pub(super) fn run(op: &str, p: &Value, x: &HashMap<String, Tensor>) -> kiln::Result<Vec<(String, Tensor)>> {
    let y = |t: Tensor| Ok(vec![("y".to_string(), t)]);
    match op {
        "sdpa_keep" => {
            let mask = Tensor::additive_mask(&x["keep"])?;
            y(Tensor::scaled_dot_product_attention(&x["q"], &x["k"], &x["v"], Some(&mask), false, None)?)
        }
        "sdpa_gqa" => {
            let causal = p["causal"].as_bool().unwrap();
            y(Tensor::scaled_dot_product_attention_gqa(&x["q"], &x["k"], &x["v"], None, causal, None)?)
        }
        "pow" => y(x["a"].pow(&x["b"])?),
        "amax" | "amin" => {
            let (dims, keep) = dims_keep(p);
            y(if op == "amax" { x["x"].amax(&dims, keep)? } else { x["x"].amin(&dims, keep)? })
        }
        "max_all" => y(x["x"].max_all()?),
        "min_all" => y(x["x"].min_all()?),
        "std" => {
            let (dims, keep) = dims_keep(p);
            y(x["x"].std(&dims, p["unbiased"].as_bool().unwrap(), keep)?)
        }
        "vector_norm" => {
            let (dims, keep) = dims_keep(p);
            y(x["x"].vector_norm(ord(&p["ord"]), &dims, keep)?)
        }
        "interpolate" => {
            let mode = if p["mode"] == "nearest-exact" { NearestMode::NearestExact } else { NearestMode::Nearest };
            let to = match p["scale_factor"].as_array() {
                Some(f) => InterpolateTo::ScaleFactor([f[0].as_f64().unwrap(), f[1].as_f64().unwrap()]),
                None => InterpolateTo::Size(pair(&p["size"])),
            };
            y(x["x"].interpolate_nearest(to, mode)?)
        }
        "grad_penalty" => {
            // torch.autograd.grad(out, x, create_graph=True), then a penalty on it.
            let xv = Var::new(&x["x"])?;
            let h = xv.matmul(&x["w"])?.tanh()?;
            let out = h.mul(&h)?.sum(&[1], false)?.sum_all()?;
            let opts = GradOptions { create_graph: true, ..Default::default() };
            let gx = kiln::tensor::grad(&[&out], &[&xv], None, opts)?.remove(0).unwrap();
            let pen = gx.vector_norm(2.0, &[1], false)?.add_scalar(-1.0)?.sqr()?.mean_all()?;
            Ok(vec![("y".into(), pen), ("gx".into(), gx)])
        }
        "batch_norm_cma" => {
            let vs = VarStore::new(Device::Cpu, DType::F64, 0);
            let mut bn = BatchNorm2d::new(&vs.root().sub("bn"), 3)?;
            bn.momentum = None;
            bn.weight.set(&x["w"])?;
            bn.bias.set(&x["b"])?;
            let mut out = vec![];
            for i in 0..3 {
                out.push(("y".to_string(), bn.forward(&x[&format!("x{i}")], true)?));
                out.push((format!("running_mean_{}", i + 1), bn.running_mean.copy()?));
                out.push((format!("running_var_{}", i + 1), bn.running_var.copy()?));
                out.push((format!("num_batches_tracked_{}", i + 1), bn.num_batches_tracked.copy()?));
            }
            out.push(("y_eval".into(), bn.forward(&x["x0"], false)?));
            // The last train output is "y".
            let last = out.iter().rposition(|(n, _)| n == "y").unwrap();
            let y_last = out.remove(last);
            out.retain(|(n, _)| n != "y");
            out.push(y_last);
            Ok(out)
        }
        other => panic!("fixture op {other} has no runner"),
    }
}

fn v(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64()
}

/// torch: cross_entropy's mean over targets that are all ignore_index is
/// 0/0 = NaN (and sum is 0).
#[test]
fn cross_entropy_all_ignored_is_nan() {
    let logits = t64(&[0.3, -1.0, 2.0, 0.1, 0.5, -0.2], &[2, 3]);
    let t = Tensor::indices(&[-100, -100], &[2], Device::Cpu).unwrap();
    let mean = loss::cross_entropy(&logits, &t, loss::CrossEntropy::default()).unwrap();
    assert!(mean.to_scalar().unwrap().is_nan());
    let args = loss::CrossEntropy { reduction: Reduction::Sum, ..Default::default() };
    assert_eq!(loss::cross_entropy(&logits, &t, args).unwrap().to_scalar().unwrap(), 0.0);
    // A target that is neither a class nor ignore_index is an error, not a panic.
    let bad = Tensor::indices(&[1, 7], &[2], Device::Cpu).unwrap();
    assert!(loss::cross_entropy(&logits, &bad, loss::CrossEntropy::default()).is_err());
}

/// torch: std over a size-1 dim with the unbiased correction is NaN; the
/// biased one is 0.
#[test]
fn std_of_one_element_unbiased_is_nan() {
    let x = t64(&[2.5, -1.0], &[2, 1]);
    assert!(v(&x.std(&[1], true, false).unwrap()).iter().all(|s| s.is_nan()));
    assert_eq!(v(&x.std(&[1], false, false).unwrap()), vec![0.0, 0.0]);
}

/// torch: 0^-1 = inf with d/dbase = -inf and d/dexp = -inf (the base-0 mask
/// only covers exponents >= 0); (-2)^0.5 = NaN; 0^0.5 has d/dbase = inf.
#[test]
fn pow_infinities_at_zero_base() {
    let a = Var::new(&t64(&[0.0, -2.0, 0.0], &[3])).unwrap();
    let b = Var::new(&t64(&[-1.0, 0.5, 0.5], &[3])).unwrap();
    let y = a.pow(&b).unwrap();
    let yv = v(&y);
    assert_eq!(yv[0], f64::INFINITY);
    assert!(yv[1].is_nan());
    assert_eq!(yv[2], 0.0);
    let g = y.sum_all().unwrap().backward().unwrap();
    let (ga, gb) = (v(g.get(&a).unwrap()), v(g.get(&b).unwrap()));
    assert_eq!((ga[0], gb[0]), (f64::NEG_INFINITY, f64::NEG_INFINITY));
    assert!(ga[1].is_nan() && gb[1].is_nan());
    assert_eq!((ga[2], gb[2]), (f64::INFINITY, 0.0));
}

/// torch: binary_cross_entropy's target gradient is ln(1 − p) − ln p,
/// unclamped: +inf at p = 0 and −inf at p = 1 (its input gradient stays
/// finite: ±1e12, pinned by the fixture).
#[test]
fn bce_target_gradient_is_infinite_at_0_and_1() {
    let p = t64(&[0.0, 1.0], &[2]);
    let t = Var::new(&t64(&[0.5, 0.5], &[2])).unwrap();
    let l = loss::binary_cross_entropy(&p, &t, None, Reduction::Sum).unwrap();
    assert_eq!(l.to_scalar().unwrap(), 100.0);
    assert_eq!(v(l.backward().unwrap().get(&t).unwrap()), vec![f64::INFINITY, f64::NEG_INFINITY]);
}

/// torch.autograd.grad: an input the outputs do not use is an error unless
/// allow_unused (None) or materialize_grads (zeros); an interior tensor can
/// be differentiated; several outputs with grad_outputs add up.
#[test]
fn functional_grad_options() {
    let x = Var::new(&t64(&[1.0, 2.0, 3.0], &[3])).unwrap();
    let unused = Var::new(&t64(&[5.0], &[1])).unwrap();
    let h = x.sqr().unwrap();
    let out = h.sum_all().unwrap();
    let opts = GradOptions::default();
    assert!(kiln::tensor::grad(&[&out], &[&x, &unused], None, opts).is_err());
    let allow = GradOptions { allow_unused: true, ..opts };
    let gs = kiln::tensor::grad(&[&out], &[&x, &unused], None, allow).unwrap();
    assert_eq!(v(gs[0].as_ref().unwrap()), vec![2.0, 4.0, 6.0]);
    assert!(gs[1].is_none());
    let zeros = GradOptions { materialize_grads: true, ..opts };
    let gs = kiln::tensor::grad(&[&out], &[&unused], None, zeros).unwrap();
    assert_eq!(v(gs[0].as_ref().unwrap()), vec![0.0]);
    // d out / d h (interior) is 1; h and x together.
    let gs = kiln::tensor::grad(&[&out], &[&h, &x], None, opts).unwrap();
    assert_eq!(v(gs[0].as_ref().unwrap()), vec![1.0; 3]);
    assert_eq!(v(gs[1].as_ref().unwrap()), vec![2.0, 4.0, 6.0]);
    // Two outputs, one non-scalar with its grad_output.
    let seed = t64(&[1.0, 0.0, -1.0], &[3]);
    let one = out.ones_like().unwrap();
    let gs = kiln::tensor::grad(&[&h, &out], &[&x], Some(&[&seed, &one]), opts).unwrap();
    assert_eq!(v(gs[0].as_ref().unwrap()), vec![4.0, 4.0, 0.0]);
    // A non-scalar output without grad_outputs, and an input without a Var, are errors.
    assert!(kiln::tensor::grad(&[&h], &[&x], None, opts).is_err());
    assert!(kiln::tensor::grad(&[&out], &[&t64(&[1.0], &[1])], None, opts).is_err());
    // Nothing was accumulated: a fresh backward still gives the plain gradient.
    assert_eq!(v(out.backward().unwrap().get(&x).unwrap()), vec![2.0, 4.0, 6.0]);
}
