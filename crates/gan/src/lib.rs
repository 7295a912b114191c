//! kiln-gan: generative adversarial networks on kiln-tensor: DCGAN
//! (dcgan.rs), the conditional GAN on its networks (cgan.rs), and the
//! objectives and penalties they train with (loss.rs).

pub mod cgan;
pub mod dcgan;
pub mod loss;

pub use cgan::Cgan;
pub use dcgan::{DNorm, Dcgan, DcganConfig, StepStats};
pub use loss::GanLoss;
