//! kiln-vae: the variational autoencoder of Kingma & Welling (2014) with
//! a convolutional encoder to q(z|x) = N(μ, σ²) and a decoder p(x|z),
//! trained on the ELBO; the importance-weighted bound of Burda et al.
//! (2016) for held-out likelihoods. All numbers are nats per image: sums
//! over pixels and latent dimensions, means over the batch.
//!
//! - `model.rs`: the networks, the config, the training step, sampling.
//! - `elbo.rs`: the likelihoods and the terms of the bounds.
//! - `pictures.rs`: reconstructions, interpolations, the 2-D manifold map.

pub mod elbo;
pub mod model;
pub mod pictures;

pub use elbo::{Likelihood, log_normal_std};
pub use model::{DEFAULT, Vae, VaeConfig, VaeStats};
