//! avg_pool2d, max_pool2d and upsample_nearest2d with PyTorch's output-size
//! rules (ceil_mode, count_include_pad, padding ≤ kernel/2).
//! max_pool2d is an argmax kernel plus a gather; upsampling is two
//! index_selects, so their gradients come from the index ops.

use crate::error::{Result, arg_err, shape_err};
use crate::op::Op;
use crate::{Device, Tensor};

/// Pooling window parameters (torch.nn.functional.{avg,max}_pool2d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Used by max_pool2d only (avg_pool2d has none in torch).
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    /// Used by avg_pool2d only (torch default true).
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// torch defaults: stride = kernel, no padding, dilation 1.
    pub fn new(kernel: [usize; 2]) -> Self {
        Pool2dParams {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
}

/// Sizes of one pooling call: `planes` = N·C independent H×W planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub count_include_pad: bool,
}

fn geom(op: &'static str, x: &Tensor, p: &Pool2dParams) -> Result<(PoolGeom, [usize; 4])> {
    let [n, c, h, w]: [usize; 4] = x
        .shape()
        .try_into()
        .map_err(|_| shape_err(op, format!("input must be 4-D (N, C, H, W), got {:?}", x.shape())))?;
    if p.kernel.contains(&0) || p.stride.contains(&0) || p.dilation.contains(&0) {
        return Err(arg_err(
            op,
            format!("kernel {:?}, stride {:?} and dilation {:?} must be positive", p.kernel, p.stride, p.dilation),
        ));
    }
    if (0..2).any(|i| p.padding[i] > p.kernel[i] / 2) {
        return Err(arg_err(op, format!("padding {:?} must be at most half the kernel {:?}", p.padding, p.kernel)));
    }
    let out = |len: usize, i: usize| -> Result<usize> {
        let span = p.dilation[i] * (p.kernel[i] - 1) + 1;
        let padded = len + 2 * p.padding[i];
        if span > padded {
            return Err(shape_err(
                op,
                format!(
                    "kernel {:?} (dilation {:?}) is larger than the padded input {:?}",
                    p.kernel,
                    p.dilation,
                    [h, w]
                ),
            ));
        }
        let extra = if p.ceil_mode { p.stride[i] - 1 } else { 0 };
        let mut o = (padded - span + extra) / p.stride[i] + 1;
        // torch: the last window must start inside the input or left padding.
        if p.ceil_mode && (o - 1) * p.stride[i] >= len + p.padding[i] {
            o -= 1;
        }
        Ok(o)
    };
    let (oh, ow) = (out(h, 0)?, out(w, 1)?);
    let g = PoolGeom {
        planes: n * c,
        h,
        w,
        oh,
        ow,
        kernel: p.kernel,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
        count_include_pad: p.count_include_pad,
    };
    Ok((g, [n, c, oh, ow]))
}

/// torch.nn.functional.interpolate's nearest-neighbour modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NearestMode {
    /// "nearest": output i reads floor(i · scale) (torch's legacy rule).
    #[default]
    Nearest,
    /// "nearest-exact": output i reads floor((i + ½) · scale), pixel centres aligned.
    NearestExact,
}

/// interpolate's `size=` or `scale_factor=` (with recompute_scale_factor
/// unset: the given factor, not out/in, maps output to input indices).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InterpolateTo {
    Size([usize; 2]),
    ScaleFactor([f64; 2]),
}

/// torch's nearest source indices along one axis: scale = 1/factor when a
/// factor is given, else in/out, both in f32 as torch's CPU kernel.
fn nearest_indices(
    input: usize,
    output: usize,
    factor: Option<f64>,
    mode: NearestMode,
    device: Device,
) -> Result<Tensor> {
    let scale = match factor {
        Some(f) if f > 0.0 => (1.0 / f) as f32,
        _ => input as f32 / output as f32,
    };
    let src = |i: usize| -> usize {
        let s = match mode {
            // torch's shortcuts for same size and exact doubling.
            NearestMode::Nearest if output == input => return i,
            NearestMode::Nearest if output == 2 * input => return i / 2,
            NearestMode::Nearest => (i as f32 * scale).floor(),
            NearestMode::NearestExact => (((i as f64 + 0.5) * scale as f64) as f32).floor(),
        };
        (s as usize).min(input - 1)
    };
    let idx: Vec<i64> = (0..output).map(|i| src(i) as i64).collect();
    Tensor::indices(&idx, &[output], device)
}

impl Tensor {
    /// torch.nn.functional.avg_pool2d (dilation is ignored, as torch has none).
    pub fn avg_pool2d(&self, p: Pool2dParams) -> Result<Tensor> {
        let p = Pool2dParams { dilation: [1, 1], ..p };
        let (g, shape) = geom("avg_pool2d", self, &p)?;
        self.avg_pool2d_geom(g, &shape)
    }

    fn avg_pool2d_geom(&self, g: PoolGeom, shape: &[usize]) -> Result<Tensor> {
        let s = self.storage().avg_pool2d_fwd(self.layout(), g)?;
        Ok(Tensor::from_op(s, shape, || Op::AvgPool2d(self.clone(), g)))
    }

    fn avg_pool2d_bwd(&self, g: PoolGeom, input_shape: &[usize]) -> Result<Tensor> {
        let s = self.storage().avg_pool2d_bwd(self.layout(), g)?;
        Ok(Tensor::from_op(s, input_shape, || Op::AvgPool2dBwd(self.clone(), g)))
    }

    /// torch.nn.functional.max_pool2d.
    pub fn max_pool2d(&self, p: Pool2dParams) -> Result<Tensor> {
        Ok(self.max_pool2d_with_indices(p)?.0)
    }

    /// Values and the i64 index of each maximum within its H·W plane
    /// (torch's return_indices=True).
    pub fn max_pool2d_with_indices(&self, p: Pool2dParams) -> Result<(Tensor, Tensor)> {
        let (g, shape) = geom("max_pool2d", self, &p)?;
        let idx = Tensor::from_storage(self.storage().max_pool2d_indices(self.layout(), g)?, &[g.planes, g.oh * g.ow]);
        let vals = self.reshape(&[g.planes, g.h * g.w])?.gather(1, &idx)?;
        Ok((vals.reshape(&shape)?, idx.reshape(&shape)?))
    }

    /// torch.nn.functional.interpolate(mode="nearest", size=[oh, ow]).
    pub fn upsample_nearest2d(&self, size: [usize; 2]) -> Result<Tensor> {
        self.interpolate_nearest(InterpolateTo::Size(size), NearestMode::Nearest)
    }

    /// torch.nn.functional.interpolate(x, size | scale_factor, mode="nearest"
    /// | "nearest-exact") on (N, C, H, W). A factor s gives floor(H·s) rows.
    pub fn interpolate_nearest(&self, to: InterpolateTo, mode: NearestMode) -> Result<Tensor> {
        const OP: &str = "interpolate";
        let [_, _, h, w]: [usize; 4] =
            self.shape().try_into().map_err(|_| shape_err(OP, format!("input must be 4-D, got {:?}", self.shape())))?;
        let (size, factors) = match to {
            InterpolateTo::Size(size) => (size, [None, None]),
            InterpolateTo::ScaleFactor(f) => {
                if f.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(arg_err(OP, format!("scale factors must be finite and positive, got {f:?}")));
                }
                ([(h as f64 * f[0]).floor() as usize, (w as f64 * f[1]).floor() as usize], [Some(f[0]), Some(f[1])])
            }
        };
        if size.contains(&0) || h == 0 || w == 0 {
            return Err(arg_err(OP, format!("sizes must be positive: input {:?}, output {size:?}", [h, w])));
        }
        let rows = nearest_indices(h, size[0], factors[0], mode, self.device())?;
        let cols = nearest_indices(w, size[1], factors[1], mode, self.device())?;
        self.index_select(2, &rows)?.index_select(3, &cols)
    }
}

type Grads = Result<Vec<Option<Tensor>>>;

pub(crate) fn avg_pool2d_backward(x: &Tensor, geom: PoolGeom, g: &Tensor) -> Grads {
    Ok(vec![Some(g.avg_pool2d_bwd(geom, x.shape())?)])
}

pub(crate) fn avg_pool2d_bwd_backward(dy: &Tensor, geom: PoolGeom, g: &Tensor) -> Grads {
    Ok(vec![Some(g.avg_pool2d_geom(geom, dy.shape())?)])
}
