//! Values of views and data movement (no gradients here; see grad_*).

use kiln::{DType, Device, Tensor};

use crate::common::t64;

#[test]
fn transpose_narrow_and_contiguous() {
    let x = Tensor::arange(0.0, 6.0, 1.0, DType::F64, Device::Cpu).unwrap().reshape(&[2, 3]).unwrap();
    let t = x.t().unwrap();
    assert!(!t.is_contiguous());
    assert_eq!(t.to_vec_f64(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(t.contiguous().unwrap().layout().strides(), &[2, 1]);
    assert_eq!(x.narrow(1, 1, 2).unwrap().to_vec_f64(), vec![1.0, 2.0, 4.0, 5.0]);
    assert_eq!(t.reshape(&[6]).unwrap().to_vec_f64(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

#[test]
fn cat_stack_split_chunk() {
    let a = t64(&[1.0, 2.0], &[1, 2]);
    let b = t64(&[3.0, 4.0], &[1, 2]);
    assert_eq!(Tensor::cat(&[&a, &b], 0).unwrap().to_vec_f64(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(Tensor::cat(&[&a, &b], 1).unwrap().to_vec_f64(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(Tensor::cat(&[&a.t().unwrap(), &b.t().unwrap()], 1).unwrap().to_vec_f64(), vec![1.0, 3.0, 2.0, 4.0]);
    assert_eq!(Tensor::stack(&[&a, &b], 0).unwrap().shape(), &[2, 1, 2]);
    let x = Tensor::arange(0.0, 5.0, 1.0, DType::F32, Device::Cpu).unwrap();
    let parts: Vec<Vec<f64>> = x.chunk(2, 0).unwrap().iter().map(|p| p.to_vec_f64()).collect();
    assert_eq!(parts, vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0]]);
    assert_eq!(x.split(2, 0).unwrap().len(), 3);
}

#[test]
fn broadcast_and_where() {
    let col = t64(&[1.0, 2.0], &[2, 1]);
    let row = t64(&[10.0, 20.0, 30.0], &[3]);
    assert_eq!(col.add(&row).unwrap().to_vec_f64(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    let mask = row.gt(&row.scalar_like(15.0).unwrap()).unwrap();
    assert_eq!(Tensor::where_cond(&mask, &row, &col).unwrap().to_vec_f64(), vec![1.0, 20.0, 30.0, 2.0, 20.0, 30.0]);
}

#[test]
fn index_ops_values() {
    let x = Tensor::arange(0.0, 6.0, 1.0, DType::F64, Device::Cpu).unwrap().reshape(&[3, 2]).unwrap();
    let idx = Tensor::indices(&[2, 0, 2], &[3], Device::Cpu).unwrap();
    assert_eq!(x.index_select(0, &idx).unwrap().to_vec_f64(), vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
    let gi = Tensor::indices(&[1, 0, 0, 0, 1, 1], &[3, 2], Device::Cpu).unwrap();
    assert_eq!(x.gather(1, &gi).unwrap().to_vec_f64(), vec![1.0, 0.0, 2.0, 2.0, 5.0, 5.0]);
    let s = t64(&[1.0, 1.0, 1.0], &[3, 1]).index_add(0, &idx, 3).unwrap();
    assert_eq!(s.to_vec_f64(), vec![1.0, 0.0, 2.0]);
}

#[test]
fn dtype_conversions_round_trip() {
    let x = t64(&[1.5, -2.25, 3.0], &[3]);
    for d in [DType::F32, DType::F16, DType::BF16] {
        assert_eq!(x.to_dtype(d).unwrap().to_dtype(DType::F64).unwrap().to_vec_f64(), vec![1.5, -2.25, 3.0], "{d:?}");
    }
    assert_eq!(x.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(), vec![1, -2, 3]);
}

#[test]
fn integer_tensors_compare_sum_and_move() {
    // The usual accuracy computation: argmax == label, counted.
    let logits = t64(&[0.1, 0.9, 0.8, 0.2, 0.3, 0.7], &[3, 2]);
    let labels = Tensor::indices(&[1, 0, 0], &[3], Device::Cpu).unwrap();
    let hits = logits.argmax(1, false).unwrap().eq(&labels).unwrap();
    assert_eq!(hits.dtype(), DType::I64);
    assert_eq!(hits.sum_all().unwrap().to_vec::<i64>().unwrap(), vec![2]);
    // Shuffling labels with the same permutation as the images.
    let perm = Tensor::indices(&[2, 0, 1], &[3], Device::Cpu).unwrap();
    assert_eq!(labels.index_select(0, &perm).unwrap().to_vec::<i64>().unwrap(), vec![0, 1, 0]);
    assert_eq!(labels.add(&labels).unwrap().to_vec::<i64>().unwrap(), vec![2, 0, 0]);
    assert!(labels.div(&labels).unwrap_err().to_string().contains("i64 division"));
    let half = t64(&[1.0, 2.0], &[2]).to_dtype(DType::F16).unwrap();
    assert_eq!(
        half.index_select(0, &Tensor::indices(&[1], &[1], Device::Cpu).unwrap()).unwrap().to_vec_f64(),
        vec![2.0]
    );
}
