//! The closed list of recordable ops. Each arm names its inputs and points
//! at its gradient rule, which lives beside the forward in `ops/<stem>.rs`.

use crate::Tensor;
use crate::error::Result;
use crate::ops::attention::AttentionSaved;
use crate::ops::batch_norm::BatchNormSaved;
use crate::ops::conv2d::ConvGeom;
use crate::ops::elementwise::{BinaryOp, UnaryOp, binary_backward, unary_backward, where_backward};
use crate::ops::norm::GroupNormSaved;
use crate::ops::pool::PoolGeom;
use crate::ops::{conv2d, index, linalg, loss, matmul, pool, reduce, shape, softmax};

pub(crate) enum Op {
    Copy(Tensor),
    ToDType(Tensor),
    Reshape(Tensor),
    Permute(Tensor, Vec<usize>),
    Narrow(Tensor, usize, usize),
    Broadcast(Tensor),
    Cat(Vec<Tensor>, usize),
    Unary(Tensor, UnaryOp),
    Binary(Tensor, Tensor, BinaryOp),
    /// (mask, a, b); the mask gets no gradient.
    Where(Tensor, Tensor, Tensor),
    Sum(Tensor),
    /// amax or amin (the rule finds the ties from the output).
    Amax(Tensor),
    Softmax(Tensor, usize),
    LogSoftmax(Tensor, usize),
    Gather(Tensor, usize, Tensor),
    ScatterAdd(Tensor, usize, Tensor),
    IndexSelect(Tensor, usize, Tensor),
    IndexAdd(Tensor, usize, Tensor),
    Matmul(Tensor, Tensor),
    /// A⁻¹ of each (…, n, n) matrix (the rule reads the output).
    Inverse(Tensor),
    /// log|det A| of each (…, n, n) matrix.
    LogAbsDet(Tensor),
    /// (p, t): binary_cross_entropy with torch's clamped gradient rule.
    BinaryCrossEntropy(Tensor, Tensor),
    Conv2d(Tensor, Tensor, ConvGeom),
    Conv2dBwdInput(Tensor, Tensor, ConvGeom),
    Conv2dBwdWeight(Tensor, Tensor, ConvGeom),
    AvgPool2d(Tensor, PoolGeom),
    AvgPool2dBwd(Tensor, PoolGeom),
    BatchNorm(Box<BatchNormSaved>),
    GroupNorm(Box<GroupNormSaved>),
    Attention(Box<AttentionSaved>),
}

impl Op {
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Copy(x) | Op::ToDType(x) | Op::Reshape(x) | Op::Broadcast(x) => vec![x],
            Op::Permute(x, _) | Op::Narrow(x, ..) | Op::Unary(x, _) | Op::Sum(x) | Op::Amax(x) => vec![x],
            Op::Inverse(x) | Op::LogAbsDet(x) => vec![x],
            Op::Softmax(x, _) | Op::LogSoftmax(x, _) | Op::AvgPool2d(x, _) | Op::AvgPool2dBwd(x, _) => vec![x],
            Op::Cat(xs, _) => xs.iter().collect(),
            Op::Binary(a, b, _) | Op::Matmul(a, b) | Op::BinaryCrossEntropy(a, b) => vec![a, b],
            Op::Conv2d(a, b, _) | Op::Conv2dBwdInput(a, b, _) | Op::Conv2dBwdWeight(a, b, _) => {
                vec![a, b]
            }
            Op::Where(m, a, b) => vec![m, a, b],
            Op::Gather(x, _, i) | Op::ScatterAdd(x, _, i) | Op::IndexSelect(x, _, i) | Op::IndexAdd(x, _, i) => {
                vec![x, i]
            }
            Op::BatchNorm(s) => s.inputs(),
            Op::GroupNorm(s) => s.inputs(),
            Op::Attention(s) => s.inputs(),
        }
    }

    /// Gradients for `inputs()` (in order; None = no gradient) given the
    /// node's output `y` and the gradient `g` flowing into it. `needs[i]`
    /// says whether input i wants one (torch's `needs_input_grad`): the
    /// matmul and convolution rules skip the GEMMs of unwanted gradients,
    /// such as a network input's.
    pub fn backward(&self, y: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let one = |t: Tensor| Ok(vec![Some(t)]);
        match self {
            Op::Copy(_) => one(g.clone()),
            Op::ToDType(x) => one(g.to_dtype(x.dtype())?),
            Op::Reshape(x) => one(g.reshape(x.shape())?),
            Op::Permute(_, dims) => shape::permute_backward(dims, g),
            Op::Narrow(x, dim, start) => shape::narrow_backward(x, *dim, *start, g),
            Op::Broadcast(x) => one(g.sum_to_shape(x.shape())?),
            Op::Cat(xs, dim) => shape::cat_backward(xs, *dim, g),
            Op::Unary(x, op) => unary_backward(x, y, g, *op),
            Op::Binary(a, b, op) => binary_backward(a, b, y, g, *op),
            Op::Where(m, a, b) => where_backward(m, a, b, g),
            Op::Sum(x) => reduce::sum_backward(x, g),
            Op::Amax(x) => reduce::amax_backward(x, y, g),
            Op::Softmax(_, dim) => softmax::softmax_backward(y, *dim, g),
            Op::LogSoftmax(_, dim) => softmax::log_softmax_backward(y, *dim, g),
            Op::Gather(x, dim, i) => index::gather_backward(x, *dim, i, g),
            Op::ScatterAdd(_, dim, i) => index::scatter_add_backward(*dim, i, g),
            Op::IndexSelect(x, dim, i) => index::index_select_backward(x, *dim, i, g),
            Op::IndexAdd(_, dim, i) => index::index_add_backward(*dim, i, g),
            Op::Matmul(a, b) => matmul::matmul_backward(a, b, g, needs),
            Op::Inverse(_) => linalg::inverse_backward(y, g),
            Op::LogAbsDet(x) => linalg::log_abs_det_backward(x, g),
            Op::BinaryCrossEntropy(p, t) => loss::binary_cross_entropy_backward(p, t, g),
            Op::Conv2d(x, w, geom) => conv2d::conv2d_backward(x, w, *geom, g, needs),
            Op::Conv2dBwdInput(dy, w, geom) => conv2d::conv2d_bwd_input_backward(dy, w, *geom, g, needs),
            Op::Conv2dBwdWeight(x, dy, geom) => conv2d::conv2d_bwd_weight_backward(x, dy, *geom, g, needs),
            Op::AvgPool2d(x, geom) => pool::avg_pool2d_backward(x, *geom, g),
            Op::AvgPool2dBwd(dy, geom) => pool::avg_pool2d_bwd_backward(dy, *geom, g),
            Op::BatchNorm(s) => s.backward(g),
            Op::GroupNorm(s) => s.backward(g),
            Op::Attention(s) => s.backward(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Conv2dParams, DType, Device, Rng, Tensor, Var};

    /// A network input (no Var behind it) gets no gradient, and its GEMMs
    /// are not run: the rule returns None for it and the same weight
    /// gradient as when both are wanted.
    #[test]
    fn unwanted_input_gradients_are_not_computed() {
        let mut rng = Rng::new(7);
        let x = Tensor::randn(&[2, 3, 6, 6], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
        let w = Var::new(&Tensor::randn(&[4, 3, 3, 3], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap()).unwrap();
        let p = Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
        let y = x.conv2d(&w, None, p).unwrap();
        let g = y.ones_like().unwrap();
        let op = y.op().unwrap();
        let both = op.backward(&y, &g, &[true, true]).unwrap();
        let only_w = op.backward(&y, &g, &[false, true]).unwrap();
        assert!(both[0].is_some() && only_w[0].is_none());
        assert_eq!(both[1].as_ref().unwrap().to_vec_f64(), only_w[1].as_ref().unwrap().to_vec_f64());
        // The same through matmul, and backward() only asks for what is tracked.
        let a = Tensor::randn(&[3, 5], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap();
        let b = Var::new(&Tensor::randn(&[5, 2], 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).unwrap()).unwrap();
        let m = a.matmul(&b).unwrap();
        let grads = m.op().unwrap().backward(&m, &m.ones_like().unwrap(), &[false, true]).unwrap();
        assert!(grads[0].is_none() && grads[1].is_some());
        let all = m.sum_all().unwrap().backward().unwrap();
        assert!(all.get(&a).is_none() && all.get(&b).is_some());
    }
}
