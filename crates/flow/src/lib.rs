//! kiln-flow: normalising flows trained by exact maximum likelihood.
//! Every layer maps x to (y, log|det ∂y/∂x|) and back exactly; RealNVP and
//! Glow are lists of such layers with multi-scale splits (`flow.rs`).

pub mod dequant;
pub mod flow;
pub mod glow;
pub mod layers;
pub mod model;
pub mod nets;
pub mod realnvp;
pub mod reversible;

pub use flow::{Encoded, FlowNet, Node, Prior};
pub use glow::{Glow, GlowConfig};
pub use model::{Flow, FlowStats, Training};
pub use realnvp::{RealNvp, RealNvpConfig};
