//! Layers with torch.nn's parameter names, shapes and default inits.

use kiln_tensor::{Conv2dParams, ConvTranspose2dParams, Result, Tensor, Var};

use crate::{Init, Path};

/// A layer: `train` selects training behaviour (batch statistics, dropout).
pub trait Module: Send + Sync {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;
}

/// y = x Wᵀ + b; weight (out, in), bias (out).
pub struct Linear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl Linear {
    pub fn new(p: &Path, inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        let weight = p.param("weight", &[outputs, inputs], Init::DefaultWeight)?;
        let bias = if bias { Some(p.param("bias", &[outputs], Init::DefaultBias { fan_in: inputs })?) } else { None };
        Ok(Linear { weight, bias })
    }
}

/// x Wᵀ + b, torch's F.linear.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&weight.t()?)?;
    match bias {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        linear(x, &self.weight, self.bias.as_deref())
    }
}

/// torch.nn.Conv2d: weight (out, in/groups, k, k), bias (out).
pub struct Conv2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub params: Conv2dParams,
}

impl Conv2d {
    pub fn new(p: &Path, cin: usize, cout: usize, kernel: usize, params: Conv2dParams, bias: bool) -> Result<Self> {
        let weight = p.param("weight", &[cout, cin / params.groups.max(1), kernel, kernel], Init::DefaultWeight)?;
        let fan_in = cin / params.groups.max(1) * kernel * kernel;
        let bias = if bias { Some(p.param("bias", &[cout], Init::DefaultBias { fan_in })?) } else { None };
        Ok(Conv2d { weight, bias, params })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_deref(), self.params)
    }
}

/// torch.nn.ConvTranspose2d: weight (in, out/groups, k, k), bias (out).
pub struct ConvTranspose2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub params: ConvTranspose2dParams,
}

impl ConvTranspose2d {
    pub fn new(
        p: &Path,
        cin: usize,
        cout: usize,
        kernel: usize,
        params: ConvTranspose2dParams,
        bias: bool,
    ) -> Result<Self> {
        let weight = p.param("weight", &[cin, cout / params.groups.max(1), kernel, kernel], Init::DefaultWeight)?;
        // torch computes the fan of a transposed conv from weight.size(1).
        let fan_in = cout / params.groups.max(1) * kernel * kernel;
        let bias = if bias { Some(p.param("bias", &[cout], Init::DefaultBias { fan_in })?) } else { None };
        Ok(ConvTranspose2d { weight, bias, params })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        x.conv_transpose2d(&self.weight, self.bias.as_deref(), self.params)
    }
}

/// torch.nn.BatchNorm2d (works for any (N, C, *) input): weight, bias,
/// and the buffers running_mean, running_var and num_batches_tracked
/// (saved in checkpoints, named as in a PyTorch state_dict; the count is
/// kept in the store's float dtype, exact up to 2²⁴ batches in f32, so
/// that it is updated on the device without a sync).
pub struct BatchNorm2d {
    pub weight: Var,
    pub bias: Var,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    /// torch's momentum; None = the cumulative moving average over every
    /// batch seen (factor 1/num_batches_tracked).
    pub momentum: Option<f64>,
    pub eps: f64,
}

impl BatchNorm2d {
    /// torch defaults: momentum 0.1, eps 1e-5, weight 1, bias 0.
    pub fn new(p: &Path, channels: usize) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: p.param("weight", &[channels], Init::Const(1.0))?,
            bias: p.param("bias", &[channels], Init::Const(0.0))?,
            running_mean: p.buffer("running_mean", &[channels], 0.0)?,
            running_var: p.buffer("running_var", &[channels], 1.0)?,
            num_batches_tracked: p.buffer("num_batches_tracked", &[], 0.0)?,
            momentum: Some(0.1),
            eps: 1e-5,
        })
    }
}

/// torch's BatchNorm bookkeeping before a forward: in training, counts the
/// batch in `num_batches_tracked` and returns the running statistics'
/// factor (`momentum`, or 1/count for the cumulative average when None).
pub fn count_batch(num_batches_tracked: &Tensor, momentum: Option<f64>, train: bool) -> Result<f64> {
    let mut factor = momentum.unwrap_or(0.0);
    if train {
        let n = num_batches_tracked;
        n.assign(&n.add_scalar(1.0)?)?;
        if momentum.is_none() {
            // The only host read of the count, and only in this mode.
            factor = 1.0 / n.to_scalar()?;
        }
    }
    Ok(factor)
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let momentum = count_batch(&self.num_batches_tracked, self.momentum, train)?;
        x.batch_norm(
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            train,
            momentum,
            self.eps,
        )
    }
}

/// torch.nn.LayerNorm over the trailing `shape`.
pub struct LayerNorm {
    pub weight: Var,
    pub bias: Var,
    pub shape: Vec<usize>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(p: &Path, shape: &[usize]) -> Result<Self> {
        Ok(LayerNorm {
            weight: p.param("weight", shape, Init::Const(1.0))?,
            bias: p.param("bias", shape, Init::Const(0.0))?,
            shape: shape.to_vec(),
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        x.layer_norm(&self.shape, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// torch.nn.GroupNorm.
pub struct GroupNorm {
    pub weight: Var,
    pub bias: Var,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(p: &Path, groups: usize, channels: usize) -> Result<Self> {
        Ok(GroupNorm {
            weight: p.param("weight", &[channels], Init::Const(1.0))?,
            bias: p.param("bias", &[channels], Init::Const(0.0))?,
            groups,
            eps: 1e-5,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

/// torch.nn.Embedding: weight (num, dim) ~ N(0, 1); input: i64 indices.
pub struct Embedding {
    pub weight: Var,
}

impl Embedding {
    pub fn new(p: &Path, num: usize, dim: usize) -> Result<Self> {
        Ok(Embedding { weight: p.param("weight", &[num, dim], Init::Normal { mean: 0.0, std: 1.0 })? })
    }
}

impl Module for Embedding {
    /// `x`: i64 indices of any shape; output shape x.shape + [dim].
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let flat = x.reshape(&[x.numel()])?;
        let mut shape = x.shape().to_vec();
        shape.push(self.weight.shape()[1]);
        self.weight.index_select(0, &flat)?.reshape(&shape)
    }
}

/// torch.nn.Dropout: zeroes with probability p and scales by 1/(1−p) in
/// training; identity in evaluation. Masks come from the store's generator.
pub struct Dropout {
    pub p: f64,
    path: Path,
}

impl Dropout {
    pub fn new(path: &Path, p: f64) -> Self {
        Dropout { p, path: path.clone() }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        // The scaled mask is made on the host in one pass (draws are host
        // side on every backend anyway), not as rand → lt → scale passes.
        let (keep, scale) = (1.0 - self.p, 1.0 / (1.0 - self.p));
        let mask: Vec<f64> =
            self.path.with_rng(|rng| (0..x.numel()).map(|_| if rng.uniform() < keep { scale } else { 0.0 }).collect());
        x.mul(&Tensor::from_f64(&mask, x.shape(), x.dtype(), x.device())?)
    }
}

/// Parameter-free activations as layers.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    Relu,
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    Gelu,
    Silu,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        match *self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(s),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu(),
            Activation::Silu => x.silu(),
        }
    }
}

/// Layers applied in order (torch.nn.Sequential).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// `push` for a layer whose type is chosen at run time.
    pub fn push_boxed(mut self, layer: Box<dyn Module>) -> Self {
        self.layers.push(layer);
        self
    }
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |h, l| l.forward(&h, train))
    }
}
