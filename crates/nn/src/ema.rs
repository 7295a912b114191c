//! Exponential moving average of a model's weights (Polyak averaging), as
//! diffusion models and GAN generators sample with: a second copy of the
//! model in its own `VarStore`, updated after each optimizer step by
//! shadow ← d·shadow + (1 − d)·param. Only trainable parameters are
//! averaged; buffers (batchnorm running statistics) are copied, so the
//! average never mixes state that is not a weight.

use kiln_tensor::{Error, Result, Tensor, Var, no_grad};

use crate::VarStore;

/// Pairs each parameter of a model with the same-named one of its shadow.
pub struct Ema {
    /// The decay d (0.999 for short runs, 0.9999 for long ones).
    pub decay: f64,
    /// Use min(d, (1 + n)/(10 + n)) at update n, so the average is not
    /// dominated by the random initial weights in a short run.
    pub warmup: bool,
    params: Vec<(Var, Var)>,
    buffers: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// `shadow` must hold a model of the same layout as `source` (same names,
    /// shapes, dtypes); it is set to `source`'s values now.
    pub fn new(source: &VarStore, shadow: &VarStore, decay: f64, warmup: bool) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::Argument { op: "ema", msg: format!("decay {decay} must be in [0, 1]") });
        }
        let mismatch = |msg: String| Error::Argument { op: "ema", msg };
        let (src, dst) = (source.named_tensors(), shadow.named_tensors());
        if src.len() != dst.len() {
            return Err(mismatch(format!("source has {} tensors, shadow {}", src.len(), dst.len())));
        }
        let trainable: Vec<(String, Var)> = source.trainable();
        let shadow_params = shadow.trainable();
        let mut params = vec![];
        let mut buffers = vec![];
        for ((sn, st), (dn, dt)) in src.into_iter().zip(dst) {
            if sn != dn || st.shape() != dt.shape() || st.dtype() != dt.dtype() {
                return Err(mismatch(format!(
                    "source tensor {sn} {:?} does not match shadow {dn} {:?}",
                    st.shape(),
                    dt.shape()
                )));
            }
            dt.assign(&st)?;
            match (trainable.iter().find(|(n, _)| *n == sn), shadow_params.iter().find(|(n, _)| *n == dn)) {
                (Some((_, s)), Some((_, d))) => params.push((s.clone(), d.clone())),
                (None, None) => buffers.push((st, dt)),
                _ => return Err(mismatch(format!("{sn} is a parameter on one side and a buffer on the other"))),
            }
        }
        Ok(Ema { decay, warmup, params, buffers })
    }

    /// The decay used at update `n` (0-based: the first update is n = 0).
    pub fn decay_at(&self, n: u64) -> f64 {
        match self.warmup {
            true => self.decay.min((1.0 + n as f64) / (10.0 + n as f64)),
            false => self.decay,
        }
    }

    /// One update; `n` counts the updates before this one (pass the
    /// optimizer's step count minus one, so a resumed run continues the
    /// same sequence of decays with no state of its own).
    pub fn update(&self, n: u64) -> Result<()> {
        let _g = no_grad();
        let d = self.decay_at(n);
        for (src, dst) in &self.params {
            // d·s + (1 − d)·p = s + (1 − d)(p − s): one rounding less when d → 1.
            dst.set(&dst.add(&src.sub(dst)?.mul_scalar(1.0 - d)?)?)?;
        }
        for (src, dst) in &self.buffers {
            dst.assign(src)?;
        }
        Ok(())
    }
}
