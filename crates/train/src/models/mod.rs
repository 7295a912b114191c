//! One recipe per model (the model itself lives in its own crate); the
//! registry (`registry.rs`) lists them.

pub mod cgan;
pub mod classifier;
pub mod dcgan;
pub mod ddpm;
pub mod flow;
pub mod vae;
