//! The closed list of recordable ops. Each arm names its inputs and points
//! at its gradient rule, which lives beside the forward in `ops/<stem>.rs`.

use crate::Tensor;
use crate::error::Result;
use crate::ops::attention::AttentionSaved;
use crate::ops::batch_norm::BatchNormSaved;
use crate::ops::conv2d::ConvGeom;
use crate::ops::elementwise::{BinaryOp, UnaryOp, binary_backward, unary_backward, where_backward};
use crate::ops::pool::PoolGeom;
use crate::ops::{conv2d, index, matmul, pool, reduce, shape, softmax};

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
    Softmax(Tensor, usize),
    LogSoftmax(Tensor, usize),
    Gather(Tensor, usize, Tensor),
    ScatterAdd(Tensor, usize, Tensor),
    IndexSelect(Tensor, usize, Tensor),
    IndexAdd(Tensor, usize, Tensor),
    Matmul(Tensor, Tensor),
    Conv2d(Tensor, Tensor, ConvGeom),
    Conv2dBwdInput(Tensor, Tensor, ConvGeom),
    Conv2dBwdWeight(Tensor, Tensor, ConvGeom),
    AvgPool2d(Tensor, PoolGeom),
    AvgPool2dBwd(Tensor, PoolGeom),
    BatchNorm(Box<BatchNormSaved>),
    Attention(Box<AttentionSaved>),
}

impl Op {
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Copy(x) | Op::ToDType(x) | Op::Reshape(x) | Op::Broadcast(x) => vec![x],
            Op::Permute(x, _) | Op::Narrow(x, ..) | Op::Unary(x, _) | Op::Sum(x) => vec![x],
            Op::Softmax(x, _) | Op::LogSoftmax(x, _) | Op::AvgPool2d(x, _) | Op::AvgPool2dBwd(x, _) => vec![x],
            Op::Cat(xs, _) => xs.iter().collect(),
            Op::Binary(a, b, _) | Op::Matmul(a, b) => vec![a, b],
            Op::Conv2d(a, b, _) | Op::Conv2dBwdInput(a, b, _) | Op::Conv2dBwdWeight(a, b, _) => {
                vec![a, b]
            }
            Op::Where(m, a, b) => vec![m, a, b],
            Op::Gather(x, _, i) | Op::ScatterAdd(x, _, i) | Op::IndexSelect(x, _, i) | Op::IndexAdd(x, _, i) => {
                vec![x, i]
            }
            Op::BatchNorm(s) => s.inputs(),
            Op::Attention(s) => s.inputs(),
        }
    }

    /// Gradients for `inputs()` (in order; None = no gradient) given the
    /// node's output `y` and the gradient `g` flowing into it.
    pub fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
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
            Op::Softmax(_, dim) => softmax::softmax_backward(y, *dim, g),
            Op::LogSoftmax(_, dim) => softmax::log_softmax_backward(y, *dim, g),
            Op::Gather(x, dim, i) => index::gather_backward(x, *dim, i, g),
            Op::ScatterAdd(_, dim, i) => index::scatter_add_backward(*dim, i, g),
            Op::IndexSelect(x, dim, i) => index::index_select_backward(x, *dim, i, g),
            Op::IndexAdd(_, dim, i) => index::index_add_backward(*dim, i, g),
            Op::Matmul(a, b) => matmul::matmul_backward(a, b, g),
            Op::Conv2d(x, w, geom) => conv2d::conv2d_backward(x, w, *geom, g),
            Op::Conv2dBwdInput(dy, w, geom) => conv2d::conv2d_bwd_input_backward(dy, w, *geom, g),
            Op::Conv2dBwdWeight(x, dy, geom) => conv2d::conv2d_bwd_weight_backward(x, dy, *geom, g),
            Op::AvgPool2d(x, geom) => pool::avg_pool2d_backward(x, *geom, g),
            Op::AvgPool2dBwd(dy, geom) => pool::avg_pool2d_bwd_backward(dy, *geom, g),
            Op::BatchNorm(s) => s.backward(g),
            Op::Attention(s) => s.backward(g),
        }
    }
}
