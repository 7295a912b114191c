//! Typed errors for the common mistakes: each names the op and the shapes.

use kiln::tensor::{Conv2dParams, ConvTranspose2dParams, Pool2dParams};
use kiln::{DType, Device, Error, Tensor};

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, Device::Cpu).unwrap()
}

fn msg(r: kiln::Result<Tensor>) -> String {
    r.expect_err("the call must fail").to_string()
}

#[test]
fn conv2d_channel_mismatch() {
    let m = msg(zeros(&[1, 3, 8, 8]).conv2d(&zeros(&[2, 4, 3, 3]), None, Conv2dParams::default()));
    assert_eq!(m, "conv2d: input has 3 channels but weight [2, 4, 3, 3] expects 4 (groups = 1)");
}

#[test]
fn conv2d_kernel_larger_than_padded_input() {
    let m = msg(zeros(&[1, 1, 2, 2]).conv2d(&zeros(&[1, 1, 5, 5]), None, Conv2dParams::default()));
    assert!(m.starts_with("conv2d: kernel 5x5"), "{m}");
    assert!(m.contains("larger than the padded input [2, 2]"), "{m}");
}

#[test]
fn conv2d_groups_must_divide_channels() {
    let p = Conv2dParams { groups: 2, ..Default::default() };
    let m = msg(zeros(&[1, 3, 4, 4]).conv2d(&zeros(&[2, 1, 1, 1]), None, p));
    assert!(m.contains("groups = 2 must divide input channels 3"), "{m}");
}

#[test]
fn conv_transpose2d_output_padding_bound() {
    let p = ConvTranspose2dParams { stride: [2, 2], output_padding: [2, 2], ..Default::default() };
    let m = msg(zeros(&[1, 1, 4, 4]).conv_transpose2d(&zeros(&[1, 1, 3, 3]), None, p));
    assert!(m.contains("output_padding [2, 2] must be smaller than stride [2, 2] or dilation [1, 1]"), "{m}");
}

#[test]
fn broadcasting_failure() {
    let m = msg(zeros(&[2, 3]).add(&zeros(&[4, 3])));
    assert_eq!(m, "add: shapes [2, 3] and [4, 3] cannot be broadcast together (dim 0: 2 vs 4)");
}

#[test]
fn matmul_inner_dimension_mismatch() {
    let m = msg(zeros(&[2, 3]).matmul(&zeros(&[4, 5])));
    assert_eq!(m, "matmul: inner dimensions differ: [2, 3] @ [4, 5] (3 vs 4)");
}

#[test]
fn dtype_mismatch() {
    let a = zeros(&[2]);
    let b = Tensor::zeros(&[2], DType::F64, Device::Cpu).unwrap();
    assert_eq!(a.mul(&b).unwrap_err(), Error::DTypeMismatch { op: "mul", lhs: DType::F32, rhs: DType::F64 });
}

#[test]
fn unavailable_devices_are_errors_not_panics() {
    // Ordinals no machine here has (other tests opt into software adapters).
    let e = Tensor::zeros(&[2], DType::F32, Device::Cuda(99)).unwrap_err();
    assert!(matches!(e, Error::DeviceUnavailable { device: Device::Cuda(99), .. }), "{e}");
    let e = zeros(&[2]).to_device(Device::Wgpu(99)).unwrap_err();
    assert!(matches!(e, Error::DeviceUnavailable { device: Device::Wgpu(99), .. }), "{e}");
}

#[test]
fn half_precision_is_storage_only_on_cpu() {
    let h = zeros(&[2]).to_dtype(DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.exp().unwrap_err(), Error::UnsupportedDType { op: "exp", dtype: DType::F16, device: Device::Cpu });
    assert_eq!(h.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
}

#[test]
fn index_out_of_range() {
    let idx = Tensor::indices(&[0, 3], &[2], Device::Cpu).unwrap();
    let m = msg(zeros(&[3, 2]).index_select(0, &idx));
    assert_eq!(m, "index_select: invalid argument: index 3 is out of range for a dim of size 3");
}

#[test]
fn shape_errors_for_views_and_norms() {
    assert!(msg(zeros(&[2, 3]).reshape(&[4])).starts_with("reshape: cannot reshape [2, 3]"));
    assert!(msg(zeros(&[2, 3]).narrow(1, 2, 2)).contains("exceeds dim 1 of size 3"));
    assert!(
        msg(zeros(&[1, 3, 1, 1]).batch_norm(None, None, None, None, true, 0.1, 1e-5))
            .contains("more than 1 value per channel")
    );
    assert!(msg(zeros(&[2, 3, 4]).max_pool2d(Pool2dParams::new([2, 2]))).contains("must be 4-D"));
    let q = zeros(&[1, 2, 4]);
    let k = zeros(&[1, 3, 5]);
    assert!(
        msg(Tensor::scaled_dot_product_attention(&q, &k, &k, None, false, None))
            .starts_with("scaled_dot_product_attention:")
    );
}

#[test]
fn edge_cases_found_in_review() {
    let x = kiln::Var::new(&zeros(&[2, 2])).unwrap();
    let y = x.exp().unwrap();
    let seed = Tensor::ones(&[2, 2], DType::F64, Device::Cpu).unwrap();
    assert!(y.backward_with(&seed, false).unwrap_err().to_string().contains("seed gradient is F64"));
    assert!(zeros(&[2, 3]).sum_to_shape(&[3, 2]).is_err());
    assert!(zeros(&[4, 1]).sum_to_shape(&[2, 2]).is_err());
    assert!(zeros(&[1, 3, 4, 4]).conv2d(&zeros(&[2, 3, 0, 3]), None, Conv2dParams::default()).is_err());
    assert!(zeros(&[1, 3, 4, 4]).conv2d(&zeros(&[0, 3, 3, 3]), None, Conv2dParams::default()).is_err());
    assert!(zeros(&[3]).narrow(0, 2, usize::MAX).is_err());
    assert!(Tensor::zeros(&[1 << 40, 1 << 40], DType::F32, Device::Cpu).is_err());
    let b = zeros(&[1, 3]).broadcast_as(&[2, 3]).unwrap();
    assert!(b.assign(&zeros(&[2, 3])).is_err());
    // An empty dim list reduces every dim, as torch.sum(x, dim=[]).
    assert_eq!(
        Tensor::ones(&[2, 3], DType::F32, Device::Cpu).unwrap().sum(&[], false).unwrap().to_vec_f64(),
        vec![6.0]
    );
}

#[test]
fn nan_propagates_through_relu_and_clamp() {
    let x = Tensor::from_slice(&[f32::NAN, -1.0], &[2], Device::Cpu).unwrap();
    assert!(x.relu().unwrap().to_vec_f64()[0].is_nan());
    assert!(x.clamp(0.0, 1.0).unwrap().to_vec_f64()[0].is_nan());
}

#[test]
fn powf_zero_has_zero_gradient_at_zero() {
    let x = kiln::Var::new(&Tensor::zeros(&[2], DType::F64, Device::Cpu).unwrap()).unwrap();
    let g = x.powf(0.0).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec_f64(), vec![0.0, 0.0]);
}

#[test]
fn keep_masks_become_additive_masks() {
    let keep = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 1.0], &[2, 2], Device::Cpu).unwrap();
    let m = Tensor::additive_mask(&keep).unwrap();
    assert_eq!(m.to_vec_f64(), vec![0.0, f64::NEG_INFINITY, 0.0, 0.0]);
    let q = Tensor::ones(&[1, 2, 3], DType::F64, Device::Cpu).unwrap();
    let v = Tensor::from_slice(&[1.0f64, 1.0, 1.0, 5.0, 5.0, 5.0], &[1, 2, 3], Device::Cpu).unwrap();
    let y = Tensor::scaled_dot_product_attention(&q, &q, &v, Some(&m), false, None).unwrap();
    // Row 0 sees only key 0.
    assert_eq!(&y.to_vec_f64()[..3], &[1.0, 1.0, 1.0]);
}

#[test]
fn inverse_and_slogdet_need_square_float_matrices() {
    assert_eq!(msg(zeros(&[2, 3]).inverse()), "inverse: expects square matrices (…, n, n), got [2, 3]");
    assert!(zeros(&[4]).slogdet().is_err());
    let singular =
        Tensor::from_f64(&[1.0, 2.0, 2.0, 4.0, 1.0, 0.0, 0.0, 1.0], &[2, 2, 2], DType::F64, Device::Cpu).unwrap();
    assert_eq!(msg(singular.inverse()), "inverse: invalid argument: matrix 0 of [2, 2, 2] is singular");
    // As torch.linalg.slogdet: sign 0 and log|det| −∞ for the singular one.
    let (sign, log) = singular.slogdet().unwrap();
    assert_eq!(sign.to_vec_f64(), vec![0.0, 1.0]);
    assert_eq!(log.to_vec_f64(), vec![f64::NEG_INFINITY, 0.0]);
}

/// The arguments added for PyTorch parity refuse bad values by name.
#[test]
fn pytorch_argument_errors_name_the_op() {
    use kiln::tensor::loss::{CrossEntropy, cross_entropy};
    use kiln::tensor::{InterpolateTo, NearestMode};
    let img = zeros(&[1, 1, 4, 4]);
    let m = msg(img.interpolate_nearest(InterpolateTo::ScaleFactor([0.0, 1.0]), NearestMode::Nearest));
    assert!(m.starts_with("interpolate: invalid argument: scale factors must be finite and positive"), "{m}");
    let m = msg(img.interpolate_nearest(InterpolateTo::ScaleFactor([0.2, 1.0]), NearestMode::NearestExact));
    assert!(m.contains("output [0, 4]"), "{m}");
    let m = msg(zeros(&[3]).vector_norm(-1.0, &[], false));
    assert!(m.starts_with("vector_norm: invalid argument: ord must be"), "{m}");
    let (q, kv) = (zeros(&[1, 3, 2, 4]), zeros(&[1, 2, 2, 4]));
    let m = msg(Tensor::scaled_dot_product_attention_gqa(&q, &kv, &kv, None, false, None));
    assert!(m.contains("enable_gqa needs") && m.contains("[1, 3, 2, 4]"), "{m}");
    let labels = Tensor::indices(&[0, 1], &[2], Device::Cpu).unwrap();
    let w = zeros(&[4]);
    let args = CrossEntropy { weight: Some(&w), ..Default::default() };
    let m = msg(cross_entropy(&zeros(&[2, 3]), &labels, args));
    assert!(m.contains("weight must have one entry per class (3), got [4]"), "{m}");
    let m = msg(cross_entropy(&zeros(&[2, 3]), &zeros(&[2]), CrossEntropy::default()));
    assert!(m.contains("i64 targets"), "{m}");
    let m = msg(labels.pow(&labels));
    assert!(m.contains("i64 division and pow are not supported"), "{m}");
}
