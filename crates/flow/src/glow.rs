//! Glow (Kingma & Dhariwal 2018): per level a squeeze, K steps of actnorm →
//! LU 1×1 conv → affine coupling with a sigmoid(h + 2) scale, then a split
//! whose half leaves with a learned conditional prior; a learned top prior.

use kiln_nn::{Init, Path, VarStore};
use kiln_tensor::{DType, Device, Error, Result};

use crate::dequant::Preprocess;
use crate::flow::{FlowNet, Node, Prior};
use crate::layers::{ActNorm, Bound, ConvForm, Coupling, InvConv, Mask, Squeeze, zero_conv};
use crate::model::{Flow, Training};
use crate::nets::GlowNet;

/// Glow's settings: constructor argument, `train glow` flags, config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct GlowConfig {
    /// Levels L (each squeezes; all but the last split half the channels off).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, allow_negative_numbers = true))]
    pub levels: usize,
    /// Steps K per level.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 24, allow_negative_numbers = true))]
    pub depth: usize,
    /// Channels of the coupling networks.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 16, allow_negative_numbers = true))]
    pub hidden: usize,
    /// The 1×1 convolution's weight: LU-decomposed, or plain with log|det| by slogdet.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = ConvForm::Lu))]
    pub invconv: ConvForm,
    /// Adam learning rate (after the warm-up).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1e-3, allow_negative_numbers = true))]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up from 0.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 200, allow_negative_numbers = true))]
    pub warmup: usize,
    /// Clip the gradients' global L2 norm (in bits/dim) to this (0: no clipping; clipping
    /// at 50 trained slower in the 10-minute runs, see README).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0, allow_negative_numbers = true))]
    pub clip: f64,
    /// Temperature of the grid and FID samples (z ~ N(μ, (T σ)²)).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.7, allow_negative_numbers = true))]
    pub temperature: f64,
    /// Image side, divisible by 2^levels (28: the digits as they are).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 28, allow_negative_numbers = true))]
    pub image_size: usize,
    /// Gradients by the reversible backward: each layer's input recomputed by
    /// inverting it instead of stored (less memory, one more forward).
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub reversible_backward: bool,
    /// Image channels: set from the data, not a flag.
    #[cfg_attr(feature = "cli", arg(skip = 1usize))]
    #[serde(skip, default = "one")]
    pub channels: usize,
}

pub(crate) fn one() -> usize {
    1
}

impl Default for GlowConfig {
    fn default() -> Self {
        GlowConfig {
            levels: 2,
            depth: 24,
            hidden: 16,
            invconv: ConvForm::Lu,
            lr: 1e-3,
            warmup: 200,
            clip: 0.0,
            temperature: 0.7,
            image_size: 28,
            reversible_backward: false,
            channels: 1,
        }
    }
}

/// The Glow network for (channels, size, size) inputs.
pub fn glow_net(p: &Path, c: &GlowConfig) -> Result<FlowNet> {
    let side = c.image_size;
    if c.levels == 0 || c.depth == 0 || c.hidden == 0 || c.channels == 0 || !side.is_multiple_of(1 << c.levels.min(16))
    {
        return Err(Error::Argument {
            op: "glow",
            msg: format!(
                "needs levels, depth, hidden and channels of at least 1 and a side divisible by 2^levels; got {c:?}"
            ),
        });
    }
    let (mut ch, mut s) = (c.channels, side);
    let mut nodes = vec![];
    for level in 0..c.levels {
        nodes.push(Node::Layer(Box::new(Squeeze)));
        (ch, s) = (ch * 4, s / 2);
        for k in 0..c.depth {
            let q = p.sub(format!("level{level}")).sub(format!("step{k}"));
            let (a, b) = (ch / 2, ch - ch / 2);
            nodes.push(Node::Layer(Box::new(ActNorm::new(&q.sub("actnorm"), ch)?)));
            nodes.push(Node::Layer(Box::new(InvConv::new(&q.sub("invconv"), ch, c.invconv)?)));
            let net = GlowNet::new(&q.sub("coupling"), a, c.hidden, 2 * b)?;
            let mask = Mask::Channel { flip: false };
            nodes.push(Node::Layer(Box::new(Coupling::new(&q, mask, Bound::Sigmoid, Box::new(net), s, s)?)));
        }
        if level + 1 < c.levels {
            let (keep, out) = (ch / 2, ch - ch / 2);
            let prior = Prior::Conditional(zero_conv(&p.sub(format!("level{level}")).sub("prior"), keep, 2 * out, 3)?);
            nodes.push(Node::Split { prior, channels: out });
            ch = keep;
        }
    }
    let q = p.sub("top");
    let top = Prior::Learned {
        mean: q.param("mean", &[1, ch, 1, 1], Init::Const(0.0))?,
        logs: q.param("logs", &[1, ch, 1, 1], Init::Const(0.0))?,
    };
    Ok(FlowNet { nodes, top, input: [c.channels, side, side], top_shape: [ch, s, s] })
}

pub struct Glow {
    pub config: GlowConfig,
    pub flow: Flow,
}

impl Glow {
    pub fn new(config: GlowConfig, device: Device, seed: u64) -> Result<Self> {
        Self::with_dtype(config, device, DType::F32, seed)
    }

    /// f64 on the CPU for the exactness checks.
    pub fn with_dtype(config: GlowConfig, device: Device, dtype: DType, seed: u64) -> Result<Self> {
        let store = VarStore::new(device, dtype, seed);
        let net = glow_net(&store.root(), &config)?;
        let training = Training {
            lr: config.lr,
            warmup: config.warmup,
            clip: config.clip,
            reversible: config.reversible_backward,
        };
        Ok(Glow { flow: Flow::new(store, net, Preprocess::Shift, training)?, config })
    }
}
