//! The fused Adam/AdamW parameter update (torch.optim.Adam's rule), for
//! optimizers: one pass instead of ten elementwise ops per parameter.

use crate::error::{Result, arg_err};
use crate::{Error, Tensor};

/// torch.optim.Adam / AdamW settings (defaults: lr 1e-3, betas 0.9/0.999, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: decoupled weight decay (p ← p·(1 − lr·wd)) instead of L2 in the gradient.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

/// One step's settings and bias corrections `bc1` = 1 − β₁ᵗ, `bc2` = 1 − β₂ᵗ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub config: AdamConfig,
    pub bc1: f64,
    pub bc2: f64,
}

impl AdamStep {
    /// The settings of update number `t` (from 1).
    pub fn new(config: AdamConfig, t: u64) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        AdamStep { config, bc1: 1.0 - config.beta1.powi(t), bc2: 1.0 - config.beta2.powi(t) }
    }
}

impl Tensor {
    /// Updates `self` (a parameter) and its moments `m`, `v` in place from
    /// `grad` as torch.optim.Adam does: L2 decay into the gradient, or
    /// AdamW's decoupled decay; then p −= lr/bc1 · m / (√v/√bc2 + eps).
    /// `self`, `m` and `v` must be dense, distinct and of one shape and
    /// dtype (as optimizer state is). Not recorded by autograd.
    pub fn adam_update(&self, grad: &Tensor, m: &Tensor, v: &Tensor, step: &AdamStep) -> Result<()> {
        const OP: &str = "adam_update";
        for t in [grad, m, v] {
            crate::ops::elementwise::check_same(OP, self, t)?;
            if t.shape() != self.shape() {
                return Err(Error::Shape {
                    op: OP,
                    msg: format!("{:?} does not match the parameter {:?}", t.shape(), self.shape()),
                });
            }
        }
        let dense = |t: &Tensor| t.layout().contiguous_range() == Some(0..t.numel());
        if ![self, m, v].iter().all(|t| dense(t)) || self.same_buffer(m) || self.same_buffer(v) || m.same_buffer(v) {
            return Err(arg_err(OP, "parameter and moments must be distinct dense tensors"));
        }
        // grad may alias nothing we write (it is read first if it does).
        let g = if grad.same_buffer(self) || grad.same_buffer(m) || grad.same_buffer(v) {
            grad.copy()?
        } else {
            grad.clone()
        };
        let gs = g.storage();
        let mut ps = self.storage_mut();
        let mut ms = m.storage_mut();
        let mut vs = v.storage_mut();
        ps.adam_update(&gs, g.layout(), &mut ms, &mut vs, step)
    }
}
