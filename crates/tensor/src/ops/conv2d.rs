//! conv2d and conv_transpose2d (PyTorch semantics: stride, padding,
//! dilation, groups, bias, output_padding). Three bilinear primitives carry
//! everything: conv2d_fwd, conv2d_bwd_input (= conv_transpose2d) and
//! conv2d_bwd_weight; each one's gradient is written with the other two, so
//! any order of derivative works.

use crate::Tensor;
use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::ops::wanted;

/// torch.nn.functional.conv2d parameters (defaults: stride 1, padding 0,
/// dilation 1, groups 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// torch.nn.functional.conv_transpose2d parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// All sizes of one convolution, named from the conv2d forward's view: the
/// input (n, c, h, w), the weight (o, c/groups, kh, kw), the output
/// (n, o, oh, ow). A transposed conv is the same geometry read backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub p: Conv2dParams,
}

impl ConvGeom {
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.o, self.c / self.p.groups, self.kh, self.kw]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }
}

fn check_params(op: &'static str, stride: [usize; 2], dilation: [usize; 2], groups: usize) -> Result<()> {
    if stride.contains(&0) || dilation.contains(&0) || groups == 0 {
        return Err(arg_err(
            op,
            format!("stride {stride:?}, dilation {dilation:?} and groups {groups} must be positive"),
        ));
    }
    Ok(())
}

fn rank4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    t.shape().try_into().map_err(|_| shape_err(op, format!("{what} must be 4-D, got {:?}", t.shape())))
}

fn add_bias(op: &'static str, y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let Some(b) = bias else { return Ok(y) };
    let o = y.shape()[1];
    if b.shape() != [o] {
        return Err(shape_err(op, format!("bias must have shape [{o}], got {:?}", b.shape())));
    }
    y.add(&b.reshape(&[1, o, 1, 1])?)
}

impl Tensor {
    /// torch.nn.functional.conv2d: input (N, C, H, W), weight (O, C/groups, kh, kw).
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        const OP: &str = "conv2d";
        check_same(OP, self, weight)?;
        check_params(OP, p.stride, p.dilation, p.groups)?;
        let [n, c, h, w] = rank4(OP, "input", self)?;
        let [o, cg, kh, kw] = rank4(OP, "weight", weight)?;
        if c % p.groups != 0 || o % p.groups != 0 {
            return Err(shape_err(
                OP,
                format!("groups = {} must divide input channels {c} and output channels {o}", p.groups),
            ));
        }
        if cg * p.groups != c {
            return Err(shape_err(
                OP,
                format!(
                    "input has {c} channels but weight {:?} expects {} (groups = {})",
                    weight.shape(),
                    cg * p.groups,
                    p.groups
                ),
            ));
        }
        if [n, c, h, w, o, kh, kw].contains(&0) {
            return Err(shape_err(OP, format!("empty input {:?} or weight {:?}", self.shape(), weight.shape())));
        }
        let out = |len: usize, k: usize, i: usize| -> Result<usize> {
            let span = p.dilation[i] * (k - 1) + 1;
            let padded = len + 2 * p.padding[i];
            if span > padded {
                return Err(shape_err(
                    OP,
                    format!(
                        "kernel {kh}x{kw} (dilation {:?}) is larger than the padded input {:?} (padding {:?})",
                        p.dilation,
                        [h, w],
                        p.padding
                    ),
                ));
            }
            Ok((padded - span) / p.stride[i] + 1)
        };
        let g = ConvGeom { n, c, h, w, o, kh, kw, oh: out(h, kh, 0)?, ow: out(w, kw, 1)?, p };
        add_bias(OP, self.conv2d_geom(weight, g)?, bias)
    }

    /// torch.nn.functional.conv_transpose2d: input (N, Cin, H, W), weight
    /// (Cin, Cout/groups, kh, kw); output side (H−1)·s − 2p + d·(k−1) + output_padding + 1.
    pub fn conv_transpose2d(&self, weight: &Tensor, bias: Option<&Tensor>, p: ConvTranspose2dParams) -> Result<Tensor> {
        const OP: &str = "conv_transpose2d";
        check_same(OP, self, weight)?;
        check_params(OP, p.stride, p.dilation, p.groups)?;
        let [n, cin, h, w] = rank4(OP, "input", self)?;
        let [wc, og, kh, kw] = rank4(OP, "weight", weight)?;
        if cin % p.groups != 0 {
            return Err(shape_err(OP, format!("groups = {} must divide input channels {cin}", p.groups)));
        }
        if wc != cin {
            return Err(shape_err(
                OP,
                format!("input has {cin} channels but weight {:?} expects {wc}", weight.shape()),
            ));
        }
        for i in 0..2 {
            if p.output_padding[i] >= p.stride[i] && p.output_padding[i] >= p.dilation[i] {
                return Err(arg_err(
                    OP,
                    format!(
                        "output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                        p.output_padding, p.stride, p.dilation
                    ),
                ));
            }
        }
        if [n, cin, h, w, og, kh, kw].contains(&0) {
            return Err(shape_err(OP, format!("empty input {:?} or weight {:?}", self.shape(), weight.shape())));
        }
        let out = |len: usize, k: usize, i: usize| -> Result<usize> {
            let full = (len - 1) * p.stride[i] + p.dilation[i] * (k - 1) + p.output_padding[i] + 1;
            full.checked_sub(2 * p.padding[i]).filter(|&v| v > 0).ok_or_else(|| {
                shape_err(
                    OP,
                    format!("padding {:?} leaves no output for input {:?} and kernel {kh}x{kw}", p.padding, [h, w]),
                )
            })
        };
        let conv = Conv2dParams { stride: p.stride, padding: p.padding, dilation: p.dilation, groups: p.groups };
        let g = ConvGeom {
            n,
            c: og * p.groups,
            h: out(h, kh, 0)?,
            w: out(w, kw, 1)?,
            o: cin,
            kh,
            kw,
            oh: h,
            ow: w,
            p: conv,
        };
        add_bias(OP, self.conv2d_bwd_input_geom(weight, g)?, bias)
    }

    /// conv2d forward for a checked geometry (no bias).
    pub(crate) fn conv2d_geom(&self, weight: &Tensor, g: ConvGeom) -> Result<Tensor> {
        let s = self.storage().conv2d_fwd(self.layout(), &weight.storage(), weight.layout(), g)?;
        Ok(Tensor::from_op(s, &g.output_shape(), || Op::Conv2d(self.clone(), weight.clone(), g)))
    }

    /// The gradient of conv2d's input for output-gradient `self` (= conv_transpose2d).
    pub(crate) fn conv2d_bwd_input_geom(&self, weight: &Tensor, g: ConvGeom) -> Result<Tensor> {
        let s = self.storage().conv2d_bwd_input(self.layout(), &weight.storage(), weight.layout(), g)?;
        Ok(Tensor::from_op(s, &g.input_shape(), || Op::Conv2dBwdInput(self.clone(), weight.clone(), g)))
    }

    /// The gradient of conv2d's weight for input `self` and output-gradient `dy`.
    pub(crate) fn conv2d_bwd_weight_geom(&self, dy: &Tensor, g: ConvGeom) -> Result<Tensor> {
        check_same("conv2d_bwd_weight", self, dy)?;
        let s = self.storage().conv2d_bwd_weight(self.layout(), &dy.storage(), dy.layout(), g)?;
        Ok(Tensor::from_op(s, &g.weight_shape(), || Op::Conv2dBwdWeight(self.clone(), dy.clone(), g)))
    }
}

type Grads = Result<Vec<Option<Tensor>>>;

pub(crate) fn conv2d_backward(x: &Tensor, w: &Tensor, geom: ConvGeom, g: &Tensor, needs: &[bool]) -> Grads {
    Ok(vec![
        wanted(needs, 0, || g.conv2d_bwd_input_geom(w, geom))?,
        wanted(needs, 1, || x.conv2d_bwd_weight_geom(g, geom))?,
    ])
}

/// Output is input-sized: y = B(dy, w), linear in each.
pub(crate) fn conv2d_bwd_input_backward(dy: &Tensor, w: &Tensor, geom: ConvGeom, g: &Tensor, needs: &[bool]) -> Grads {
    Ok(vec![wanted(needs, 0, || g.conv2d_geom(w, geom))?, wanted(needs, 1, || g.conv2d_bwd_weight_geom(dy, geom))?])
}

/// Output is weight-sized: y = W(x, dy), linear in each.
pub(crate) fn conv2d_bwd_weight_backward(x: &Tensor, dy: &Tensor, geom: ConvGeom, g: &Tensor, needs: &[bool]) -> Grads {
    Ok(vec![wanted(needs, 0, || dy.conv2d_bwd_input_geom(g, geom))?, wanted(needs, 1, || x.conv2d_geom(g, geom))?])
}
