//! kiln-nn: named parameters in a `VarStore`, the usual layers (each with a
//! `forward(x, train)`), seeded initialisers, Adam/AdamW/SGD, gradient
//! clipping, weight averaging (EMA), spectral normalisation, safetensors checkpoints written
//! atomically, and PyTorch state_dicts (safetensors) loaded by name.

pub mod checkpoint;
pub mod ema;
pub mod init;
pub mod layers;
pub mod optim;
pub mod spectral_norm;
pub mod state_dict;
pub mod var_store;

pub use checkpoint::{Checkpoint, CheckpointError, load_checkpoint, save_checkpoint};
pub use ema::Ema;
pub use init::Init;
pub use kiln_tensor::loss;
pub use layers::{
    Activation, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding, GroupNorm, LayerNorm, Linear, Module,
    Sequential,
};
pub use optim::{Adam, AdamConfig, Sgd, clip_grad_norm};
pub use spectral_norm::{SpectralNorm, SpectralNormConv2d, SpectralNormLinear};
pub use state_dict::{LoadReport, load_state_dict};
pub use var_store::{Path, VarStore};
