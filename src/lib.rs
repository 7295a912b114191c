//! kiln: hand-written compute kernels and the generative models built on
//! them. This umbrella crate re-exports the workspace crates.
//!
//! ```
//! use kiln::tensor::{Conv2dParams, Rng};
//! use kiln::{DType, Device, Tensor, Var};
//!
//! let mut rng = Rng::new(0);
//! let x = Tensor::randn(&[8, 3, 32, 32], 0.0, 1.0, DType::F32, Device::Cpu, &mut rng)?;
//! let w = Var::new(&Tensor::randn(&[16, 3, 4, 4], 0.0, 0.02, DType::F32, Device::Cpu, &mut rng)?)?;
//! let p = Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
//! let y = x.conv2d(&w, None, p)?.leaky_relu(0.2)?.mean_all()?;
//! let grads = y.backward()?;
//! assert_eq!(grads.get(&w).unwrap().shape(), &[16, 3, 4, 4]);
//! # Ok::<(), kiln::Error>(())
//! ```

pub use kiln_data as data;
pub use kiln_diffusion as diffusion;
pub use kiln_eval as eval;
pub use kiln_flow as flow;
pub use kiln_gan as gan;
pub use kiln_nn as nn;
pub use kiln_tensor as tensor;
pub use kiln_tensor::{DType, Device, Error, Result, Tensor, Var};
pub use kiln_train as train;
pub use kiln_vae as vae;
