//! Optimizers with torch.optim's update rules, and gradient clipping.
//! Updates run under no_grad and write parameters in place (`Var::set`).

use kiln_tensor::{Grads, Result, Tensor, Var, no_grad};

pub use kiln_tensor::ops::adam::AdamConfig;
use kiln_tensor::ops::adam::AdamStep;

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

pub struct Adam {
    pub config: AdamConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl Adam {
    /// One slot per named parameter (moments start at zero).
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| Ok(Slot { m: var.zeros_like()?, v: var.zeros_like()?, name, var }))
            .collect::<Result<_>>()?;
        Ok(Adam { config, slots, step: 0 })
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update from `grads`; parameters without a gradient are skipped
    /// (their moments do not decay, as in torch).
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        let _g = no_grad();
        self.step += 1;
        let step = AdamStep::new(self.config, self.step);
        for s in &self.slots {
            let Some(g) = grads.get(&s.var) else { continue };
            // One fused pass: torch's rule, p −= lr/bc1 · m / (√v/√bc2 + eps).
            s.var.adam_update(g, &s.m, &s.v, &step)?;
        }
        Ok(())
    }

    /// Moments by name (`<param>.exp_avg`, `<param>.exp_avg_sq`) and the step.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = vec![];
        for s in &self.slots {
            out.push((format!("{}.exp_avg", s.name), s.m.clone()));
            out.push((format!("{}.exp_avg_sq", s.name), s.v.clone()));
        }
        (out, self.step)
    }

    /// Restores what `state` returned (from any device, e.g. a checkpoint
    /// read on the host); every moment must be present.
    pub fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            for (suffix, slot) in [("exp_avg", &mut s.m), ("exp_avg_sq", &mut s.v)] {
                let key = format!("{}.{suffix}", s.name);
                let t = tensors.get(&key).ok_or_else(|| kiln_tensor::Error::Argument {
                    op: "Adam::load_state",
                    msg: format!("missing optimizer tensor {key}"),
                })?;
                if t.shape() != slot.shape() {
                    return Err(kiln_tensor::Error::Shape {
                        op: "Adam::load_state",
                        msg: format!("{key} has shape {:?}, expected {:?}", t.shape(), slot.shape()),
                    });
                }
                // Onto the parameter's device (checkpoints hold host tensors).
                *slot = t.to_device(slot.device())?.to_dtype(slot.dtype())?.copy()?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// torch.optim.SGD with momentum (dampening 0, no nesterov).
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    params: Vec<(Var, Option<Tensor>)>,
}

impl Sgd {
    pub fn new(params: Vec<Var>, lr: f64, momentum: f64) -> Self {
        Sgd { lr, momentum, params: params.into_iter().map(|v| (v, None)).collect() }
    }

    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        let _g = no_grad();
        for (var, buf) in &mut self.params {
            let Some(g) = grads.get(var) else { continue };
            let d = if self.momentum != 0.0 {
                let b = match buf.take() {
                    Some(b) => b.mul_scalar(self.momentum)?.add(g)?,
                    None => g.copy()?,
                };
                *buf = Some(b.clone());
                b
            } else {
                g.clone()
            };
            var.set(&var.sub(&d.mul_scalar(self.lr)?)?)?;
        }
        Ok(())
    }
}

/// Scales the gradients of `vars` so their global L2 norm is at most
/// `max_norm` (torch.nn.utils.clip_grad_norm_); returns the norm before.
pub fn clip_grad_norm(grads: &mut Grads, vars: &[Var], max_norm: f64) -> Result<f64> {
    let _g = no_grad();
    let mut total = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v) {
            total += g.sqr()?.sum_all()?.to_scalar()?;
        }
    }
    let norm = total.sqrt();
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = g.mul_scalar(scale)?;
                grads.insert(v, scaled);
            }
        }
    }
    Ok(norm)
}
