//! RealNVP (Dinh et al. 2017) for 28×28 digits: logit(α + (1 − 2α) x);
//! scale 0: 3 checkerboard couplings, squeeze, 3 channel couplings, half
//! the channels factored out to N(0, I); scale 1: 4 checkerboard
//! couplings; N(0, I) on the rest. Scales are s = scale · tanh(h).

use kiln_nn::{Init, Path, VarStore};
use kiln_tensor::{DType, Device, Error, Result};

use crate::dequant::Preprocess;
use crate::flow::{FlowNet, Node, Prior};
use crate::layers::{Bound, Coupling, Layer, Mask, Squeeze};
use crate::model::{Flow, Training};
use crate::nets::ResNet;

/// RealNVP's settings: constructor argument, `train realnvp` flags, config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct RealNvpConfig {
    /// Channels of the coupling networks.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 32, allow_negative_numbers = true))]
    pub hidden: usize,
    /// Residual blocks per coupling network.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, allow_negative_numbers = true))]
    pub blocks: usize,
    /// The logit transform's α (keeps logit away from 0 and 1).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.05, allow_negative_numbers = true))]
    pub alpha: f64,
    /// Adam learning rate (after the warm-up).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1e-3, allow_negative_numbers = true))]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up from 0.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 200, allow_negative_numbers = true))]
    pub warmup: usize,
    /// Clip the gradients' global L2 norm (in bits/dim) to this (0: no clipping; without it the
    /// default run's bits/dim spiked, see README).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 50.0, allow_negative_numbers = true))]
    pub clip: f64,
    /// Temperature of the grid and FID samples (z ~ N(0, T²I)).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.7, allow_negative_numbers = true))]
    pub temperature: f64,
    /// Image side, divisible by 2 (28: the digits as they are).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 28, allow_negative_numbers = true))]
    pub image_size: usize,
    /// Gradients by the reversible backward: each layer's input recomputed by
    /// inverting it instead of stored (less memory, one more forward).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub reversible_backward: bool,
    /// Image channels: set from the data, not a flag.
    #[cfg_attr(feature = "cli", arg(skip = 1usize))]
    #[serde(skip, default = "crate::glow::one")]
    pub channels: usize,
}

impl Default for RealNvpConfig {
    fn default() -> Self {
        RealNvpConfig {
            hidden: 32,
            blocks: 2,
            alpha: 0.05,
            lr: 1e-3,
            warmup: 200,
            clip: 50.0,
            temperature: 0.7,
            image_size: 28,
            reversible_backward: false,
            channels: 1,
        }
    }
}

fn coupling(p: &Path, c: &RealNvpConfig, mask: Mask, ch: usize, side: usize) -> Result<Box<dyn Layer>> {
    let (cin, out) = match mask {
        Mask::Checkerboard { .. } => (ch, ch),
        Mask::Channel { .. } => (ch / 2, ch - ch / 2),
    };
    let net = ResNet::new(&p.sub("net"), cin, c.hidden, c.blocks, 2 * out)?;
    let scale = p.param("scale", &[1, out, 1, 1], Init::Const(1.0))?;
    Ok(Box::new(Coupling::new(p, mask, Bound::Tanh(scale), Box::new(net), side, side)?))
}

/// The RealNVP network for (channels, size, size) inputs.
pub fn realnvp_net(p: &Path, c: &RealNvpConfig) -> Result<FlowNet> {
    let side = c.image_size;
    if c.hidden == 0 || c.channels == 0 || side < 4 || !side.is_multiple_of(2) {
        return Err(Error::Argument {
            op: "realnvp",
            msg: format!("needs hidden and channels of at least 1 and an even side of at least 4; got {c:?}"),
        });
    }
    let mut nodes = vec![];
    let layer = |k: usize, mask: Mask, ch: usize, s: usize| -> Result<Node> {
        Ok(Node::Layer(coupling(&p.sub(format!("coupling{k}")), c, mask, ch, s)?))
    };
    let (ch, half) = (c.channels, side / 2);
    for k in 0..3 {
        nodes.push(layer(k, Mask::Checkerboard { parity: k % 2 }, ch, side)?);
    }
    nodes.push(Node::Layer(Box::new(Squeeze)));
    for k in 3..6 {
        nodes.push(layer(k, Mask::Channel { flip: k % 2 == 0 }, 4 * ch, half)?);
    }
    let keep = 2 * ch;
    nodes.push(Node::Split { prior: Prior::Standard, channels: 4 * ch - keep });
    for k in 6..10 {
        nodes.push(layer(k, Mask::Checkerboard { parity: k % 2 }, keep, half)?);
    }
    Ok(FlowNet { nodes, top: Prior::Standard, input: [ch, side, side], top_shape: [keep, half, half] })
}

pub struct RealNvp {
    pub config: RealNvpConfig,
    pub flow: Flow,
}

impl RealNvp {
    pub fn new(config: RealNvpConfig, device: Device, seed: u64) -> Result<Self> {
        Self::with_dtype(config, device, DType::F32, seed)
    }

    pub fn with_dtype(config: RealNvpConfig, device: Device, dtype: DType, seed: u64) -> Result<Self> {
        if !(0.0..0.5).contains(&config.alpha) {
            return Err(Error::Argument { op: "realnvp", msg: format!("alpha {} must be in [0, 0.5)", config.alpha) });
        }
        let store = VarStore::new(device, dtype, seed);
        let net = realnvp_net(&store.root(), &config)?;
        let training = Training {
            lr: config.lr,
            warmup: config.warmup,
            clip: config.clip,
            reversible: config.reversible_backward,
        };
        let pre = Preprocess::Logit { alpha: config.alpha };
        Ok(RealNvp { flow: Flow::new(store, net, pre, training)?, config })
    }
}
