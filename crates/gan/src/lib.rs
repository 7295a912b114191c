//! kiln-gan: generative adversarial networks on kiln-tensor: DCGAN
//! (dcgan.rs) and the objectives and penalties it trains with (loss.rs).

pub mod dcgan;
pub mod loss;

pub use dcgan::{DNorm, Dcgan, DcganConfig, StepStats};
pub use loss::GanLoss;
