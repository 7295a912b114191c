//! Gradient properties of views, concatenation, index ops, reductions,
//! softmax and matmul: random shapes, dims and non-contiguous inputs.

use kiln::tensor::testing::strategies::shape;
use kiln::{Device, Tensor};
use proptest::prelude::*;

use crate::common::{check, check2, randn_away};

/// Random i64 indices in [0, n).
fn random_indices(len: usize, n: usize, seed: u64) -> Vec<i64> {
    let mut rng = kiln::tensor::Rng::new(seed);
    (0..len).map(|_| rng.below(n as u64) as i64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn views_permute_narrow_reshape_broadcast(s in shape(2..=4, 1..=4), seed in any::<u64>()) {
        let x = randn_away(&s, seed, 0.0);
        let r = s.len();
        let rev: Vec<usize> = (0..r).rev().collect();
        // Each view feeds a nonlinear op so the gradient is not a constant.
        check2(|x| x[0].permute(&rev)?.sqr(), std::slice::from_ref(&x))?;
        check2(|x| x[0].narrow(r - 1, s[r - 1] / 2, s[r - 1] - s[r - 1] / 2)?.sqr(), std::slice::from_ref(&x))?;
        check(|x| x[0].permute(&rev)?.reshape(&[usize::MAX])?.sin(), std::slice::from_ref(&x))?;
        let mut big = vec![2];
        big.extend_from_slice(&s);
        check2(|x| x[0].broadcast_as(&big)?.sqr(), std::slice::from_ref(&x))?;
        check(|x| x[0].unsqueeze(1)?.flatten(0, 1)?.squeeze(0).or_else(|_| Ok(x[0].clone()))?.exp(), &[x])?;
    }

    #[test]
    fn cat_stack_chunk_split(s in shape(1..=3, 1..=4), dim_seed in 0..3usize, seed in any::<u64>()) {
        let dim = dim_seed % s.len();
        let a = randn_away(&s, seed, 0.0);
        let b = randn_away(&s, seed ^ 3, 0.0);
        check2(|x| Tensor::cat(&[&x[0], &x[1], &x[0]], dim)?.sqr(), &[a.clone(), b.clone()])?;
        check(|x| Tensor::stack(&[&x[0], &x[1]], dim)?.sin(), &[a.clone(), b.clone()])?;
        check(|x| {
            let parts = x[0].chunk(2, dim)?;
            parts.last().unwrap().sqr()?.sum_all()?.add(&parts[0].exp()?.sum_all()?)
        }, std::slice::from_ref(&a))?;
    }

    #[test]
    fn index_select_gather_scatter(s in shape(2..=3, 1..=4), seed in any::<u64>()) {
        let x = randn_away(&s, seed, 0.0);
        let dim = (seed % s.len() as u64) as usize;
        let idx = Tensor::indices(&random_indices(5, s[dim], seed), &[5], Device::Cpu).unwrap();
        check2(|x| x[0].index_select(dim, &idx)?.sqr(), std::slice::from_ref(&x))?;
        let mut ishape = s.clone();
        ishape[dim] = 3;
        let n: usize = ishape.iter().product();
        let gidx = Tensor::indices(&random_indices(n, s[dim], seed ^ 5), &ishape, Device::Cpu).unwrap();
        check2(|x| x[0].gather(dim, &gidx)?.sqr(), std::slice::from_ref(&x))?;
        let src = randn_away(&ishape, seed ^ 9, 0.0);
        check2(|x| x[0].scatter_add(dim, &gidx, &s)?.sqr(), &[src])?;
    }

    #[test]
    fn reductions(s in shape(1..=3, 1..=4), mask in 1..8usize, keepdim in any::<bool>(), seed in any::<u64>()) {
        let dims: Vec<usize> = (0..s.len()).filter(|d| mask & (1 << d) != 0).collect();
        let dims = if dims.is_empty() { vec![0] } else { dims };
        let x = randn_away(&s, seed, 0.0);
        let xs = std::slice::from_ref(&x);
        check2(|x| x[0].sum(&dims, keepdim)?.sqr(), xs)?;
        check2(|x| x[0].mean(&dims, keepdim)?.sqr(), xs)?;
        let n: usize = dims.iter().map(|&d| s[d]).product();
        if n > 1 {
            check2(|x| x[0].var(&dims, true, keepdim), xs)?;
        }
        check2(|x| x[0].var(&dims, false, keepdim), xs)?;
        if n > 1 {
            check2(|x| x[0].std(&dims, true, keepdim), xs)?;
        }
        for ord in [2.0, 3.0, 0.7] {
            check2(|x| x[0].vector_norm(ord, &dims, keepdim), xs)?;
        }
        check(|x| x[0].vector_norm(1.0, &dims, keepdim), xs)?;
        check(|x| x[0].vector_norm(f64::INFINITY, &dims, keepdim), xs)?;
        check2(|x| x[0].logsumexp(&dims, keepdim), xs)?;
        check(|x| x[0].amax(&dims, keepdim), xs)?;
        check(|x| x[0].amin(&dims, keepdim), xs)?;
        check2(|x| x[0].max_dim(dims[0], keepdim)?.0.sqr(), xs)?;
        check2(|x| x[0].min_dim(dims[0], keepdim)?.0.sqr(), xs)?;
    }

    #[test]
    fn softmax_and_log_softmax(s in shape(1..=3, 1..=5), seed in any::<u64>()) {
        let x = randn_away(&s, seed, 0.0);
        for dim in 0..s.len() {
            check2(|x| x[0].softmax(dim), std::slice::from_ref(&x))?;
            check2(|x| x[0].log_softmax(dim), std::slice::from_ref(&x))?;
            // Non-contiguous input: softmax of a transposed view.
            if s.len() >= 2 {
                check(|x| x[0].t()?.softmax(dim), std::slice::from_ref(&x))?;
            }
        }
    }

    #[test]
    fn matmul_batched_broadcast_and_transposed(m in 1..=4usize, k in 1..=4usize, n in 1..=4usize, batch in 1..=3usize, seed in any::<u64>()) {
        let a = randn_away(&[batch, m, k], seed, 0.0);
        let b = randn_away(&[k, n], seed ^ 1, 0.0);
        check2(|x| x[0].matmul(&x[1]), &[a.clone(), b.clone()])?;
        // bᵀ stored as (n, k), and a batch-broadcast left operand.
        let bt = randn_away(&[1, n, k], seed ^ 2, 0.0);
        check2(|x| x[0].matmul(&x[1].t()?), &[a.clone(), bt])?;
        let a2 = randn_away(&[m, k], seed ^ 3, 0.0);
        let b2 = randn_away(&[batch, k, n], seed ^ 4, 0.0);
        check2(|x| x[0].matmul(&x[1]), &[a2, b2])?;
    }
}

#[test]
fn reduction_values() {
    let x = crate::common::t64(&[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]);
    assert_eq!(x.sum(&[1], false).unwrap().to_vec_f64(), vec![9.0, 12.0]);
    assert_eq!(x.sum(&[0], true).unwrap().shape(), &[1, 3]);
    let (v, i) = x.max_dim(1, false).unwrap();
    assert_eq!(v.to_vec_f64(), vec![5.0, 6.0]);
    assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, 2]);
    assert_eq!(x.argmin(0, false).unwrap().to_vec::<i64>().unwrap(), vec![0, 1, 0]);
    assert_eq!(x.amax(&[0, 1], false).unwrap().to_vec_f64(), vec![6.0]);
    assert!((x.var(&[0, 1], true, false).unwrap().to_scalar().unwrap() - 3.5).abs() < 1e-12);
}
