//! Spectral normalisation (Miyato et al. 2018) with the semantics and the
//! state_dict names of `torch.nn.utils.spectral_norm`: the parameter
//! `weight_orig`, buffers `weight_u` (h) and `weight_v` (w) for the weight
//! seen as an (h, w) matrix with `dim` first (0; 1 for transposed
//! convolutions). In training, each forward runs `n_power_iterations` of
//! power iteration under no-grad and writes u and v back; in evaluation it
//! uses them as they are. The weight is W / σ with σ = uᵀ W v, u and v
//! constants, so the gradient flows through W alone — also a second time,
//! for gradient penalties: the graph holds copies of u and v, never the
//! buffers a later forward overwrites (the bug PyTorch once had).

use kiln_tensor::{Conv2dParams, Result, Tensor, Var, no_grad};

use crate::{Init, Module, Path};

/// x / max(‖x‖₂, eps), torch's F.normalize on a vector.
fn normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.div(&x.vector_norm(2.0, &[], false)?.clamp(eps, f64::INFINITY)?)
}

/// One spectrally normalised weight.
pub struct SpectralNorm {
    pub weight_orig: Var,
    pub weight_u: Tensor,
    pub weight_v: Tensor,
    /// The dim of the weight that becomes the matrix's rows.
    pub dim: usize,
    pub n_power_iterations: usize,
    pub eps: f64,
}

impl SpectralNorm {
    /// `weight_orig` (`shape`, `init`) and u, v drawn N(0, 1) from the
    /// store's generator and normalised, as torch initialises them.
    pub fn new(p: &Path, shape: &[usize], init: Init, dim: usize) -> Result<Self> {
        let weight_orig = p.param("weight_orig", shape, init)?;
        let h = shape.get(dim).copied().unwrap_or(1);
        let w = shape.iter().product::<usize>() / h.max(1);
        let weight_u = p.buffer("weight_u", &[h], 0.0)?;
        let weight_v = p.buffer("weight_v", &[w], 0.0)?;
        let eps = 1e-12;
        let (dtype, device) = (weight_orig.dtype(), weight_orig.device());
        p.with_rng(|rng| -> Result<()> {
            weight_u.assign(&normalize(&Tensor::randn(&[h], 0.0, 1.0, dtype, device, rng)?, eps)?)?;
            weight_v.assign(&normalize(&Tensor::randn(&[w], 0.0, 1.0, dtype, device, rng)?, eps)?)
        })?;
        Ok(SpectralNorm { weight_orig, weight_u, weight_v, dim, n_power_iterations: 1, eps })
    }

    /// The weight as an (h, w) matrix, `dim` first.
    fn matrix(&self, w: &Tensor) -> Result<Tensor> {
        let h = w.shape()[self.dim];
        let mut order: Vec<usize> = vec![self.dim];
        order.extend((0..w.rank()).filter(|&d| d != self.dim));
        w.permute(&order)?.reshape(&[h, usize::MAX])
    }

    /// W / σ(W); in training, after updating u and v.
    pub fn weight(&self, train: bool) -> Result<Tensor> {
        self.normalize_weight(&self.weight_orig, train)
    }

    /// `w` / σ(`w`) for a weight of `weight_orig`'s shape (a functional
    /// call, as torch.func.functional_call): u and v are this layer's.
    pub fn normalize_weight(&self, w: &Tensor, train: bool) -> Result<Tensor> {
        let mat = self.matrix(w)?;
        if train && self.n_power_iterations > 0 {
            let _g = no_grad();
            let m = mat.detach();
            let (mut u, mut v) = (self.weight_u.copy()?, self.weight_v.copy()?);
            for _ in 0..self.n_power_iterations {
                v = normalize(&m.t()?.matmul(&u.unsqueeze(1)?)?.squeeze(1)?, self.eps)?;
                u = normalize(&m.matmul(&v.unsqueeze(1)?)?.squeeze(1)?, self.eps)?;
            }
            self.weight_u.assign(&u)?;
            self.weight_v.assign(&v)?;
        }
        // Copies: later forwards overwrite the buffers in place.
        let (u, v) = (self.weight_u.copy()?, self.weight_v.copy()?);
        let sigma = u.unsqueeze(0)?.matmul(&mat.matmul(&v.unsqueeze(1)?)?)?.reshape(&[])?;
        w.div(&sigma)
    }
}

/// torch.nn.utils.spectral_norm(nn.Conv2d(…)).
pub struct SpectralNormConv2d {
    pub sn: SpectralNorm,
    pub bias: Option<Var>,
    pub params: Conv2dParams,
}

impl SpectralNormConv2d {
    pub fn new(p: &Path, cin: usize, cout: usize, kernel: usize, params: Conv2dParams, bias: bool) -> Result<Self> {
        let per_group = cin / params.groups.max(1);
        let sn = SpectralNorm::new(p, &[cout, per_group, kernel, kernel], Init::DefaultWeight, 0)?;
        let fan_in = per_group * kernel * kernel;
        let bias = if bias { Some(p.param("bias", &[cout], Init::DefaultBias { fan_in })?) } else { None };
        Ok(SpectralNormConv2d { sn, bias, params })
    }
}

impl Module for SpectralNormConv2d {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        x.conv2d(&self.sn.weight(train)?, self.bias.as_deref(), self.params)
    }
}

/// torch.nn.utils.spectral_norm(nn.Linear(…)).
pub struct SpectralNormLinear {
    pub sn: SpectralNorm,
    pub bias: Option<Var>,
}

impl SpectralNormLinear {
    pub fn new(p: &Path, inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        let sn = SpectralNorm::new(p, &[outputs, inputs], Init::DefaultWeight, 0)?;
        let bias = if bias { Some(p.param("bias", &[outputs], Init::DefaultBias { fan_in: inputs })?) } else { None };
        Ok(SpectralNormLinear { sn, bias })
    }
}

impl Module for SpectralNormLinear {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        crate::layers::linear(x, &self.sn.weight(train)?, self.bias.as_deref())
    }
}
