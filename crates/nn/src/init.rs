//! Seeded initialisers with torch.nn.init's formulas.

use kiln_tensor::{DType, Device, Result, Rng, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Const(f64),
    Normal {
        mean: f64,
        std: f64,
    },
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// U(−a, a), a = gain·√(6 / (fan_in + fan_out)).
    XavierUniform {
        gain: f64,
    },
    /// N(0, σ²), σ = gain / √fan_in (torch's kaiming_normal_, fan_in mode).
    KaimingNormal {
        gain: f64,
    },
    /// torch's default for Linear/Conv weights: kaiming_uniform_(a = √5),
    /// i.e. U(−b, b) with b = 1/√fan_in.
    DefaultWeight,
    /// torch's default for Linear/Conv biases: U(−b, b), b = 1/√fan_in of
    /// the layer's weight.
    DefaultBias {
        fan_in: usize,
    },
}

/// (fan_in, fan_out) of a weight shaped (out, in, k…) as torch computes it.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [o, i, ..] => (i * receptive, o * receptive),
    }
}

impl Init {
    pub fn tensor(&self, shape: &[usize], dtype: DType, device: Device, rng: &mut Rng) -> Result<Tensor> {
        let (fan_in, fan_out) = fans(shape);
        let uniform = |b: f64, rng: &mut Rng| Tensor::uniform(shape, -b, b, dtype, device, rng);
        match *self {
            Init::Const(v) => Tensor::full(v, shape, dtype, device),
            Init::Normal { mean, std } => Tensor::randn(shape, mean, std, dtype, device, rng),
            Init::Uniform { lo, hi } => Tensor::uniform(shape, lo, hi, dtype, device, rng),
            Init::XavierUniform { gain } => uniform(gain * (6.0 / (fan_in + fan_out) as f64).sqrt(), rng),
            Init::KaimingNormal { gain } => {
                Tensor::randn(shape, 0.0, gain / (fan_in as f64).sqrt(), dtype, device, rng)
            }
            Init::DefaultWeight => uniform(1.0 / (fan_in as f64).sqrt(), rng),
            Init::DefaultBias { fan_in } => uniform(1.0 / (fan_in.max(1) as f64).sqrt(), rng),
        }
    }
}
