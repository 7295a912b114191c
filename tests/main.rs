//! kiln's cross-crate test binary: one module per concern.

mod autograd;
mod cgan;
mod common;
mod cuda_kernels;
mod data;
mod dcgan;
mod diffusion;
mod errors;
mod eval;
mod flow;
mod gan_losses;
mod gpu_cases;
mod gpu_parity;
mod grad_elementwise;
mod grad_nn_ops;
mod grad_shape_reduce;
mod kernels_f32;
mod nn;
mod torch_reference;
mod train;
mod vae;
mod views;
