//! kiln: hand-written compute kernels and the generative models built on
//! them. This umbrella crate re-exports the workspace crates.

pub use kiln_tensor as tensor;
pub use kiln_tensor::{DType, Device, Error, Result, Tensor, Var};
