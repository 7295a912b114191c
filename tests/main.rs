//! kiln's cross-crate test binary: one module per concern.

mod autograd;
mod common;
mod data;
mod dcgan;
mod errors;
mod grad_elementwise;
mod grad_nn_ops;
mod grad_shape_reduce;
mod kernels_f32;
mod nn;
mod torch_reference;
mod views;
mod wgpu_parity;
