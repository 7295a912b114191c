//! kiln-gan: generative adversarial networks on kiln-tensor.

pub mod dcgan;

pub use dcgan::{Dcgan, DcganConfig, StepStats};
