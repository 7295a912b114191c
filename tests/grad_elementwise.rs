//! Gradient properties of the elementwise ops: every unary op (first and
//! second derivatives), broadcasting binary ops, where_cond — on random
//! shapes including non-contiguous (transposed) inputs.

use kiln::Tensor;
use kiln::tensor::UnaryOp;
use kiln::tensor::testing::strategies::{broadcast_pair, shape};
use proptest::prelude::*;

use crate::common::{check, check2, positive, randn_away};

/// Every differentiable unary op, and whether it needs positive inputs.
const UNARY: &[(UnaryOp, bool)] = &[
    (UnaryOp::Neg, false),
    (UnaryOp::Abs, false),
    (UnaryOp::Exp, false),
    (UnaryOp::Log, true),
    (UnaryOp::Sqrt, true),
    (UnaryOp::Rsqrt, true),
    (UnaryOp::Sqr, false),
    (UnaryOp::Recip, true),
    (UnaryOp::Tanh, false),
    (UnaryOp::Sigmoid, false),
    (UnaryOp::Relu, false),
    (UnaryOp::Sin, false),
    (UnaryOp::Cos, false),
    (UnaryOp::Erf, false),
    (UnaryOp::Silu, false),
    (UnaryOp::SiluGrad, false),
    (UnaryOp::Gelu, false),
    (UnaryOp::GeluTanh, false),
    (UnaryOp::PowF(2.5), true),
    (UnaryOp::PowF(-1.5), true),
    (UnaryOp::PowF(3.0), false),
    (UnaryOp::Affine { mul: -1.5, add: 0.25 }, false),
    (UnaryOp::LeakyRelu(0.2), false),
    (UnaryOp::Elu(0.7), false),
    (UnaryOp::Softplus { beta: 1.5, threshold: 2.0 }, false),
    (UnaryOp::Clamp { min: -0.4, max: 0.6 }, false),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn unary_ops_first_and_second_derivatives(s in shape(1..=3, 1..=4), seed in any::<u64>()) {
        for &(op, pos) in UNARY {
            let x = if pos { positive(&s, seed) } else { randn_away(&s, seed, 0.05) };
            check2(|xs| xs[0].unary(op), &[x]).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
    }

    #[test]
    fn unary_ops_on_transposed_views(rows in 1..=4usize, cols in 2..=4usize, seed in any::<u64>()) {
        // The input is stored (cols, rows) and seen transposed: a strided view.
        for &(op, pos) in UNARY {
            let x = if pos { positive(&[cols, rows], seed) } else { randn_away(&[cols, rows], seed, 0.05) };
            check(|xs| xs[0].t()?.unary(op)?.matmul(&xs[0]), &[x]).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
    }

    #[test]
    fn binary_ops_broadcast((sa, sb) in broadcast_pair(3, 3), seed in any::<u64>()) {
        let a = randn_away(&sa, seed, 0.1);
        let b = randn_away(&sb, seed ^ 1, 0.1);
        check2(|x| x[0].add(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[0].sub(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[0].mul(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[0].div(&x[1].abs()?.add_scalar(0.5)?), &[a.clone(), b.clone()])?;
        check2(|x| x[0].maximum(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[0].minimum(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[0].abs()?.add_scalar(0.5)?.pow(&x[1]), &[a.clone(), b.clone()])?;
        check2(|x| x[1].abs()?.add_scalar(0.5)?.pow(&x[0]), &[a, b])?;
    }

    #[test]
    fn where_cond_routes_gradients((sa, sb) in broadcast_pair(3, 3), seed in any::<u64>()) {
        let a = randn_away(&sa, seed, 0.0);
        let b = randn_away(&sb, seed ^ 7, 0.0);
        let mask = a.gt(&a.scalar_like(0.0).unwrap()).unwrap();
        check2(|x| Tensor::where_cond(&mask, &x[0], &x[1]), &[a, b])?;
    }
}

#[test]
fn maximum_splits_the_gradient_at_ties() {
    let a = kiln::Var::new(&crate::common::t64(&[1.0, 2.0, 3.0], &[3])).unwrap();
    let b = kiln::Var::new(&crate::common::t64(&[1.0, 5.0, 0.0], &[3])).unwrap();
    let g = a.maximum(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&a).unwrap().to_vec_f64(), vec![0.5, 0.0, 1.0]);
    assert_eq!(g.get(&b).unwrap().to_vec_f64(), vec![0.5, 1.0, 0.0]);
}

#[test]
fn kinks_follow_pytorch() {
    // relu'(0) = 0, abs'(0) = 0; clamp passes the gradient only strictly
    // inside its bounds (torch 2.x: an element on a bound gets 0).
    let x = kiln::Var::new(&crate::common::t64(&[0.0, -1.0, 1.0], &[3])).unwrap();
    let g = x.relu().unwrap().add(&x.abs().unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec_f64(), vec![0.0, -1.0, 2.0]);
    let g = x.clamp(-1.0, 1.0).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec_f64(), vec![1.0, 0.0, 0.0]);
}
