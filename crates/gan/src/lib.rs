//! kiln-gan: generative adversarial networks on kiln-tensor: DCGAN
//! (dcgan.rs), the conditional GAN on its networks (cgan.rs), the
//! objectives and penalties they train with (loss.rs), SAGAN's
//! self-attention block (sagan.rs) and the conditional-batch-norm
//! generator (cond_bn.rs).

pub mod cgan;
pub mod cond_bn;
pub mod dcgan;
pub mod loss;
pub mod sagan;

pub use cgan::Cgan;
pub use dcgan::{DNorm, Dcgan, DcganConfig, StepStats};
pub use loss::GanLoss;
