//! SAGAN's self-attention block (Zhang et al. 2019): 1×1 convolutions map
//! the features to queries and keys (C/8 channels) and values (C), every
//! position attends to every other through kiln's fused attention (scores
//! unscaled, as in the paper), and y = x + γ·o with a learned γ that starts
//! at 0, so a new block begins as the identity.

use kiln_nn::{Conv2d, Init, Module, Path};
use kiln_tensor::{Conv2dParams, Error, Result, Tensor, Var};

pub struct SelfAttention {
    /// f (keys), g (queries), h (values): the paper's names.
    pub f: Conv2d,
    pub g: Conv2d,
    pub h: Conv2d,
    pub gamma: Var,
    inner: usize,
}

impl SelfAttention {
    pub fn new(p: &Path, channels: usize) -> Result<Self> {
        let inner = (channels / 8).max(1);
        let one = Conv2dParams::default();
        Ok(SelfAttention {
            f: Conv2d::new(&p.sub("f"), channels, inner, 1, one, true)?,
            g: Conv2d::new(&p.sub("g"), channels, inner, 1, one, true)?,
            h: Conv2d::new(&p.sub("h"), channels, channels, 1, one, true)?,
            gamma: p.param("gamma", &[1], Init::Const(0.0))?,
            inner,
        })
    }
}

impl Module for SelfAttention {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let &[n, c, hh, ww] = x.shape() else {
            let msg = format!("input must be (N, C, H, W), got {:?}", x.shape());
            return Err(Error::Shape { op: "self_attention", msg });
        };
        // (N, C', H, W) → (N, H·W, C'): one row per position.
        let rows = |t: Tensor, ch: usize| t.reshape(&[n, ch, hh * ww])?.transpose(1, 2);
        let q = rows(self.g.forward(x, train)?, self.inner)?;
        let k = rows(self.f.forward(x, train)?, self.inner)?;
        let v = rows(self.h.forward(x, train)?, c)?;
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None, false, Some(1.0))?;
        x.add(&o.transpose(1, 2)?.reshape(&[n, c, hh, ww])?.mul(&self.gamma)?)
    }
}
