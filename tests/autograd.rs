//! Autograd behaviour: recording only when needed, accumulation when a
//! tensor is used several times, no_grad, detach, Var updates.

use kiln::tensor::no_grad;
use kiln::{Tensor, Var};

use crate::common::t64;

#[test]
fn a_tensor_used_twice_accumulates() {
    let x = Var::new(&t64(&[3.0], &[1])).unwrap();
    // y = x·x + x  →  dy/dx = 2x + 1 = 7
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    assert_eq!(y.backward().unwrap().get(&x).unwrap().to_vec_f64(), vec![7.0]);
}

#[test]
fn diamond_graph_sums_both_paths() {
    let x = Var::new(&t64(&[1.0, 2.0], &[2])).unwrap();
    let a = x.exp().unwrap();
    let y = a.mul(&a).unwrap().add(&a.sin().unwrap()).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    let want: Vec<f64> = [1.0f64, 2.0].iter().map(|v| 2.0 * v.exp() * v.exp() + v.exp().cos() * v.exp()).collect();
    crate::common::assert_close("diamond", &g.get(&x).unwrap().to_vec_f64(), &want, 1e-12, 1e-12);
}

#[test]
fn nothing_is_recorded_without_vars_or_under_no_grad() {
    let x = t64(&[1.0, 2.0], &[2]);
    assert!(!x.exp().unwrap().tracks_grad());
    let v = Var::new(&x).unwrap();
    assert!(v.exp().unwrap().tracks_grad());
    let _guard = no_grad();
    assert!(!v.exp().unwrap().tracks_grad());
}

#[test]
fn no_grad_restores_the_previous_mode() {
    {
        let _g = no_grad();
        assert!(!kiln::tensor::is_grad_enabled());
    }
    assert!(kiln::tensor::is_grad_enabled());
}

#[test]
fn detach_cuts_the_graph() {
    let x = Var::new(&t64(&[2.0], &[1])).unwrap();
    let y = x.sqr().unwrap().detach().mul(&x).unwrap().sum_all().unwrap();
    // d/dx (c · x) with c = x² held constant = 4.
    assert_eq!(y.backward().unwrap().get(&x).unwrap().to_vec_f64(), vec![4.0]);
}

#[test]
fn backward_needs_a_scalar_and_a_graph() {
    let x = Var::new(&t64(&[1.0, 2.0], &[2])).unwrap();
    assert!(x.exp().unwrap().backward().is_err());
    assert!(t64(&[1.0], &[1]).backward().is_err());
    let g = x.exp().unwrap().backward_with(&t64(&[1.0, 0.5], &[2]), false).unwrap();
    crate::common::assert_close(
        "seeded",
        &g.get(&x).unwrap().to_vec_f64(),
        &[1f64.exp(), 0.5 * 2f64.exp()],
        1e-12,
        1e-12,
    );
}

#[test]
fn var_set_updates_in_place_and_checks_shape() {
    let v = Var::new(&t64(&[1.0, 2.0], &[2])).unwrap();
    v.set(&t64(&[5.0, 6.0], &[2])).unwrap();
    assert_eq!(v.to_vec_f64(), vec![5.0, 6.0]);
    assert!(v.set(&t64(&[1.0], &[1])).is_err());
    // A view of the var sees the update (shared storage).
    let view = v.narrow(0, 1, 1).unwrap();
    v.set(&t64(&[7.0, 8.0], &[2])).unwrap();
    assert_eq!(view.to_vec_f64(), vec![8.0]);
}

#[test]
fn double_backward_of_a_cubic() {
    let x = Var::new(&t64(&[2.0], &[1])).unwrap();
    let y = x.powf(3.0).unwrap().sum_all().unwrap();
    let g = y.backward_create_graph().unwrap();
    let dx = g.get(&x).unwrap().sum_all().unwrap(); // 3x² = 12
    assert_eq!(dx.to_scalar().unwrap(), 12.0);
    let g2 = dx.backward().unwrap(); // 6x = 12
    assert_eq!(g2.get(&x).unwrap().to_vec_f64(), vec![12.0]);
}

#[test]
fn deep_chains_do_not_overflow_the_stack() {
    let x = Var::new(&t64(&[1.0], &[1])).unwrap();
    let mut y: Tensor = x.as_tensor().clone();
    for _ in 0..20_000 {
        y = y.affine(1.0, 0.0).unwrap();
    }
    assert_eq!(y.sum_all().unwrap().backward().unwrap().get(&x).unwrap().to_vec_f64(), vec![1.0]);
}

#[test]
fn f32_and_f64_agree() {
    let mut rng = kiln::tensor::Rng::new(3);
    let x = Tensor::randn(&[2, 3, 5, 5], 0.0, 1.0, kiln::DType::F64, kiln::Device::Cpu, &mut rng).unwrap();
    let w = Tensor::randn(&[4, 3, 3, 3], 0.0, 1.0, kiln::DType::F64, kiln::Device::Cpu, &mut rng).unwrap();
    let y64 = x.conv2d(&w, None, Default::default()).unwrap().gelu().unwrap().softmax(1).unwrap();
    let (x32, w32) = (x.to_dtype(kiln::DType::F32).unwrap(), w.to_dtype(kiln::DType::F32).unwrap());
    let y32 = x32.conv2d(&w32, None, Default::default()).unwrap().gelu().unwrap().softmax(1).unwrap();
    assert_eq!(y32.dtype(), kiln::DType::F32);
    crate::common::assert_close("f32 vs f64", &y32.to_vec_f64(), &y64.to_vec_f64(), 1e-5, 1e-4);
}

#[test]
fn same_seed_same_numbers() {
    let a =
        Tensor::randn(&[8], 0.0, 1.0, kiln::DType::F32, kiln::Device::Cpu, &mut kiln::tensor::Rng::new(42)).unwrap();
    let b =
        Tensor::randn(&[8], 0.0, 1.0, kiln::DType::F32, kiln::Device::Cpu, &mut kiln::tensor::Rng::new(42)).unwrap();
    assert_eq!(a.to_vec_f64(), b.to_vec_f64());
}
