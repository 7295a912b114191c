//! Gradient properties of the network ops: conv2d, conv_transpose2d,
//! pooling, upsampling, batch/layer/group norm, attention, inverse and
//! slogdet, and the losses.
//! First and second derivatives, awkward parameters from the public
//! strategies, and non-contiguous (channels-last) inputs.

use kiln::tensor::loss::{self, Reduction};
use kiln::tensor::testing::strategies::{attention_case, conv_transpose2d_case, conv2d_case, pool2d_case, randn};
use kiln::tensor::{InterpolateTo, NearestMode};
use kiln::{Device, Tensor};
use proptest::prelude::*;

use crate::common::{check, check2, positive, randn_away};

/// A (n, c, h, w) tensor stored channels-last and viewed as NCHW.
fn channels_last(shape: [usize; 4], seed: u64) -> Tensor {
    let [n, c, h, w] = shape;
    randn(&[n, h, w, c], seed).permute(&[0, 3, 1, 2]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv2d_gradients(case in conv2d_case(6), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let b = randn(&[case.weight[0]], seed ^ 2);
        let p = case.params;
        if case.bias {
            check(|t| t[0].conv2d(&t[1], Some(&t[2]), p), &[x, w, b])?;
        } else {
            check(|t| t[0].conv2d(&t[1], None, p), &[x, w])?;
        }
        // Channels-last input: the kernel sees a strided view.
        let xs = channels_last(case.input, seed ^ 3);
        let w = randn(&case.weight, seed ^ 4);
        check(|t| t[0].conv2d(&t[1], None, p), &[xs, w])?;
    }

    #[test]
    fn conv_transpose2d_gradients(case in conv_transpose2d_case(5), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let b = randn(&[case.weight[1] * case.params.groups], seed ^ 2);
        let p = case.params;
        if case.bias {
            check(|t| t[0].conv_transpose2d(&t[1], Some(&t[2]), p), &[x, w, b])?;
        } else {
            check(|t| t[0].conv_transpose2d(&t[1], None, p), &[x, w])?;
        }
    }

    #[test]
    fn pooling_and_upsampling((shape, p) in pool2d_case(6), oh in 1..=7usize, ow in 1..=7usize, seed in any::<u64>()) {
        let x = randn(&shape, seed);
        check2(|t| t[0].avg_pool2d(p), std::slice::from_ref(&x))?;
        // Inputs without ties, so the argmax is stable under ±eps.
        check2(|t| t[0].max_pool2d(p)?.sqr(), std::slice::from_ref(&x))?;
        check2(|t| t[0].upsample_nearest2d([oh, ow])?.sqr(), std::slice::from_ref(&x))?;
        let f = [oh as f64 / 3.0 + 1.0 / shape[2] as f64, ow as f64 / 2.5 + 1.0 / shape[3] as f64];
        let exact = |t: &[Tensor]| t[0].interpolate_nearest(InterpolateTo::ScaleFactor(f), NearestMode::NearestExact);
        check2(|t| exact(t)?.sqr(), std::slice::from_ref(&x))?;
        check(|t| t[0].avg_pool2d(p), &[channels_last(shape, seed ^ 1)])?;
    }

    #[test]
    fn batch_norm_train_and_eval(n in 1..=3usize, c in 1..=3usize, h in 1..=3usize, w in 2..=3usize, affine in any::<bool>(), seed in any::<u64>()) {
        let x = randn(&[n, c, h, w], seed);
        let wt = randn_away(&[c], seed ^ 1, 0.5);
        let b = randn(&[c], seed ^ 2);
        let f = |t: &[Tensor]| {
            let (wt, b) = if affine { (Some(&t[1]), Some(&t[2])) } else { (None, None) };
            t[0].batch_norm(None, None, wt, b, true, 0.1, 1e-5)
        };
        check2(f, &[x.clone(), wt.clone(), b.clone()])?;
        let rm = randn(&[c], seed ^ 3);
        let rv = positive(&[c], seed ^ 4);
        check2(|t| t[0].batch_norm(Some(&rm), Some(&rv), Some(&t[1]), Some(&t[2]), false, 0.1, 1e-5), &[x, wt, b])?;
    }

    #[test]
    fn layer_norm_and_group_norm(n in 1..=2usize, g in 1..=3usize, cg in 1..=2usize, hw in 1..=3usize, seed in any::<u64>()) {
        let c = g * cg;
        let x = randn(&[n, c, hw, 2], seed);
        let w = randn(&[c], seed ^ 1);
        let b = randn(&[c], seed ^ 2);
        check2(|t| t[0].group_norm(g, Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w, b])?;
        let lw = randn(&[hw, 2], seed ^ 3);
        let lb = randn(&[hw, 2], seed ^ 4);
        check2(|t| t[0].layer_norm(&[hw, 2], Some(&t[1]), Some(&t[2]), 1e-5), &[x, lw, lb])?;
    }

    #[test]
    fn inverse_and_slogdet(b in 1..=2usize, n in 1..=4usize, transposed in any::<bool>(), seed in any::<u64>()) {
        // Diagonally dominant, so well away from singular; a transposed view half the time.
        let eye = Tensor::from_f64(&(0..n * n).map(|k| if k % (n + 1) == 0 { 3.0 } else { 0.0 }).collect::<Vec<_>>(), &[n, n], kiln::DType::F64, Device::Cpu).unwrap();
        let mut a = randn(&[b, n, n], seed).add(&eye).unwrap();
        if transposed {
            a = a.t().unwrap();
        }
        check2(|t| t[0].inverse(), std::slice::from_ref(&a))?;
        check2(|t| Ok(t[0].slogdet()?.1), &[a])?;
    }

    #[test]
    fn attention_gradients(case in attention_case(), seed in any::<u64>()) {
        let (q, k, v) = (randn(&case.q, seed), randn(&case.k, seed ^ 1), randn(&case.v, seed ^ 2));
        let (causal, scale) = (case.causal, case.scale);
        match &case.mask {
            Some(ms) => {
                let m = randn(ms, seed ^ 3);
                check2(|t| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], Some(&t[3]), false, scale), &[q, k, v, m])?;
            }
            None => check2(|t| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, causal, scale), &[q, k, v])?,
        }
    }

    #[test]
    fn losses(n in 1..=3usize, c in 2..=4usize, seed in any::<u64>()) {
        let x = randn(&[n, c], seed);
        let target = kiln::tensor::testing::strategies::randn(&[n, c], seed ^ 1).sigmoid().unwrap();
        for r in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            check2(|t| loss::binary_cross_entropy_with_logits(&t[0], &t[1], None, None, r), &[x.clone(), target.clone()])?;
            let pw = positive(&[c], seed ^ 2);
            let w = positive(&[n, c], seed ^ 6);
            check(|t| loss::binary_cross_entropy_with_logits(&t[0], &t[1], Some(&w), Some(&pw), r), &[x.clone(), target.clone()])?;
            check2(|t| loss::binary_cross_entropy(&t[0].sigmoid()?, &t[1], None, r), &[x.clone(), target.clone()])?;
            check(|t| loss::binary_cross_entropy(&t[0].sigmoid()?, &t[1], Some(&w), r), &[x.clone(), target.clone()])?;
            check2(|t| loss::mse_loss(&t[0], &t[1], r), &[x.clone(), target.clone()])?;
            check(|t| loss::l1_loss(&t[0], &t[1], r), &[x.clone(), target.clone()])?;
            let classes: Vec<i64> = (0..n as i64).map(|i| (i + seed as i64 % 3).rem_euclid(c as i64)).collect();
            let cls = Tensor::indices(&classes, &[n], Device::Cpu).unwrap();
            let smooth = loss::CrossEntropy { label_smoothing: 0.1, reduction: r, ..Default::default() };
            check2(|t| loss::cross_entropy(&t[0], &cls, smooth), std::slice::from_ref(&x))?;
            // Class weights, an ignored target (never all of them) and a spatial dim.
            let cw = positive(&[c], seed ^ 7);
            let spatial: Vec<i64> = (0..2 * n as i64).map(|i| if i == 1 { -100 } else { (i * 7 + seed as i64 % 5).rem_euclid(c as i64) }).collect();
            let cls2 = Tensor::indices(&spatial, &[n, 2], Device::Cpu).unwrap();
            let args = loss::CrossEntropy { weight: Some(&cw), label_smoothing: 0.1, reduction: r, ..Default::default() };
            check2(|t| loss::cross_entropy(&t[0], &cls2, args), &[randn(&[n, c, 2], seed ^ 8)])?;
        }
        check2(|t| loss::gaussian_kl(&t[0], &t[1]), &[x.clone(), randn(&[n, c], seed ^ 5)])?;
    }
}

proptest! {
    // Second derivatives of the convolutions cost more: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv2d_second_derivatives(case in conv2d_case(4), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let p = case.params;
        check2(|t| t[0].conv2d(&t[1], None, p), &[x, w])?;
    }

    #[test]
    fn conv_transpose2d_second_derivatives(case in conv_transpose2d_case(3), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let p = case.params;
        check2(|t| t[0].conv_transpose2d(&t[1], None, p), &[x, w])?;
    }
}

#[test]
fn gradient_penalty_through_conv_and_batch_norm() {
    // A WGAN-GP style penalty: ‖∇ₓ D(x)‖² differentiated w.r.t. D's weights.
    let x = kiln::Var::new(&randn(&[2, 2, 5, 5], 1)).unwrap();
    let w = kiln::Var::new(&randn(&[3, 2, 3, 3], 2)).unwrap();
    let d = |x: &Tensor, w: &Tensor| -> kiln::Result<Tensor> {
        x.conv2d(w, None, Default::default())?.batch_norm(None, None, None, None, true, 0.1, 1e-5)?.tanh()?.sum_all()
    };
    let gx = d(&x, &w).unwrap().backward_create_graph().unwrap();
    let penalty = gx.get(&x).unwrap().sqr().unwrap().sum_all().unwrap();
    let gw = penalty.backward().unwrap();
    let gw = gw.get(&w).expect("the penalty depends on the weights");
    assert_eq!(gw.shape(), &[3, 2, 3, 3]);
    assert!(gw.to_vec_f64().iter().any(|v| v.abs() > 1e-8));
}

/// Queries whose every key is masked: output 0 and zero gradients (torch
/// 2.5+), while the other rows keep their finite-difference gradients, in
/// both backward forms and through grouped heads (enable_gqa).
#[test]
fn attention_with_fully_masked_rows_and_grouped_heads() {
    let (q, k, v) = (randn(&[2, 4, 3, 5], 1), randn(&[2, 2, 6, 5], 2), randn(&[2, 2, 6, 3], 3));
    let mut keep = vec![1.0; 18];
    keep[6..12].fill(0.0);
    keep[13..].fill(0.0);
    let mask = Tensor::additive_mask(&crate::common::t64(&keep, &[3, 6])).unwrap();
    let f = |t: &[Tensor]| Tensor::scaled_dot_product_attention_gqa(&t[0], &t[1], &t[2], Some(&mask), false, None);
    check2(f, &[q.clone(), k.clone(), v.clone()]).unwrap();
    let y = f(&[q, k, v]).unwrap().to_vec_f64();
    assert!(y.chunks(3).skip(1).step_by(3).all(|row| row == [0.0; 3]), "row 1 of every head is 0");
}

/// Empty head dims: with E = 0 the scores are the mask alone (and the
/// output is still an average of V); with Ev = 0 nothing flows back. Both
/// backward forms (one task per batch, and the split one for few batches).
#[test]
fn attention_with_empty_head_dims_matches_the_composed_ops() {
    for (b, e, ev) in [(1, 0, 3), (8, 0, 3), (1, 4, 0), (8, 4, 0)] {
        let (l, s) = (5, 7);
        let q = kiln::Var::new(&randn(&[b, l, e], 1)).unwrap();
        let k = kiln::Var::new(&randn(&[b, s, e], 2)).unwrap();
        let v = kiln::Var::new(&randn(&[b, s, ev], 3)).unwrap();
        let mask = kiln::Var::new(&randn(&[l, s], 4)).unwrap();
        let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), false, Some(0.5)).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap().mul_scalar(0.5).unwrap().add(&mask).unwrap();
        let plain = scores.softmax(2).unwrap().matmul(&v).unwrap();
        let what = format!("attention b {b} e {e} ev {ev}");
        crate::common::assert_close(&what, &fused.to_vec_f64(), &plain.to_vec_f64(), 1e-12, 1e-10);
        let gy = randn(&[b, l, ev], 5);
        let gf = fused.backward_with(&gy, false).unwrap();
        let gp = plain.backward_with(&gy, false).unwrap();
        for (name, t) in [("q", q.as_tensor()), ("k", &k), ("v", &v), ("mask", &mask)] {
            let (f, p) = (gf.get(t).unwrap().to_vec_f64(), gp.get(t).unwrap().to_vec_f64());
            crate::common::assert_close(&format!("{what}: grad {name}"), &f, &p, 1e-11, 1e-9);
        }
    }
}

/// E = 0 with the default scale (1/√0 = ∞): torch scales q and k by
/// √scale before their empty product, so the scores are 0 and the weights
/// uniform (torch 2.15: row i of the output is the mean of v over the keys
/// it sees); ∞ · 0 must not make them NaN.
#[test]
fn attention_with_empty_heads_ignores_an_infinite_default_scale() {
    for causal in [false, true] {
        let q = kiln::Var::new(&randn(&[2, 5, 0], 1)).unwrap();
        let k = kiln::Var::new(&randn(&[2, 7, 0], 2)).unwrap();
        let v = kiln::Var::new(&randn(&[2, 7, 3], 3)).unwrap();
        let run = |scale| {
            let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None, causal, scale).unwrap();
            let g = y.backward_with(&randn(&[2, 5, 3], 4), false).unwrap();
            (y.to_vec_f64(), g.get(&v).unwrap().to_vec_f64())
        };
        let (y, gv) = run(None);
        assert!(y.iter().chain(&gv).all(|x| x.is_finite()), "causal {causal}: {y:?} {gv:?}");
        assert_eq!((y.clone(), gv), run(Some(0.5)), "causal {causal}");
        let vs = v.as_tensor().to_vec_f64();
        for (bi, row) in (0..2).flat_map(|bi| (0..5).map(move |i| (bi, i))) {
            let seen = if causal { row + 1 } else { 7 };
            for c in 0..3 {
                let mean = (0..seen).map(|j| vs[(bi * 7 + j) * 3 + c]).sum::<f64>() / seen as f64;
                let got = y[(bi * 5 + row) * 3 + c];
                assert!((got - mean).abs() < 1e-12, "causal {causal}: y[{bi}, {row}, {c}] = {got}, want {mean}");
            }
        }
    }
}

/// Sizes that span two query and two key tiles (128 × 256 per tile): the
/// fused forward and backward against the same attention written with
/// plain ops.
#[test]
fn attention_across_many_tiles_matches_the_composed_ops() {
    let (l, s, e, ev) = (150, 300, 8, 5);
    for (causal, masked) in [(false, false), (true, false), (false, true)] {
        let q = kiln::Var::new(&randn(&[2, l, e], 1)).unwrap();
        let k = kiln::Var::new(&randn(&[2, s, e], 2)).unwrap();
        let v = kiln::Var::new(&randn(&[2, s, ev], 3)).unwrap();
        let mask = kiln::Var::new(&randn(&[l, s], 4)).unwrap();
        let m = masked.then_some(mask.as_tensor());
        let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, m, causal, None).unwrap();
        let mut scores = q.matmul(&k.t().unwrap()).unwrap().mul_scalar(1.0 / (e as f64).sqrt()).unwrap();
        if let Some(m) = m {
            scores = scores.add(m).unwrap();
        }
        if causal {
            let blocked: Vec<f64> = (0..l * s).map(|i| if i % s > i / s { f64::NEG_INFINITY } else { 0.0 }).collect();
            scores = scores.add(&crate::common::t64(&blocked, &[l, s])).unwrap();
        }
        let plain = scores.softmax(2).unwrap().matmul(&v).unwrap();
        crate::common::assert_close("attention forward", &fused.to_vec_f64(), &plain.to_vec_f64(), 1e-12, 1e-10);
        let gy = randn(&[2, l, ev], 5);
        let gf = fused.backward_with(&gy, false).unwrap();
        let gp = plain.backward_with(&gy, false).unwrap();
        for (name, t) in [("q", q.as_tensor()), ("k", &k), ("v", &v), ("mask", &mask)] {
            if name == "mask" && !masked {
                continue;
            }
            let what = format!("attention grad {name} (causal {causal}, mask {masked})");
            crate::common::assert_close(
                &what,
                &gf.get(t).unwrap().to_vec_f64(),
                &gp.get(t).unwrap().to_vec_f64(),
                1e-11,
                1e-9,
            );
        }
    }
}
