//! The networks inside couplings: they compute (t, raw scale) and need not
//! be invertible. Each ends in a zero-initialised conv, so a coupling
//! starts as the identity (up to Glow's constant sigmoid(2) scale).

use kiln_nn::{Conv2d, Module, Path};
use kiln_tensor::{Result, Tensor};

use crate::layers::{same, zero_conv};

/// Glow's: conv3 → ReLU → conv1 → ReLU → zero conv3.
pub struct GlowNet {
    convs: [Conv2d; 3],
}

impl GlowNet {
    pub fn new(p: &Path, cin: usize, hidden: usize, cout: usize) -> Result<Self> {
        Ok(GlowNet {
            convs: [
                Conv2d::new(&p.sub("in"), cin, hidden, 3, same(3), true)?,
                Conv2d::new(&p.sub("mid"), hidden, hidden, 1, same(1), true)?,
                zero_conv(&p.sub("out"), hidden, cout, 3)?,
            ],
        })
    }
}

impl Module for GlowNet {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.convs[0].forward(x, train)?.relu()?;
        let h = self.convs[1].forward(&h, train)?.relu()?;
        self.convs[2].forward(&h, train)
    }
}

/// RealNVP's (without its batch norms): conv3 in, `blocks` residual blocks
/// (ReLU → conv3 → ReLU → conv3, plus the input), ReLU, zero conv3 out.
pub struct ResNet {
    input: Conv2d,
    blocks: Vec<[Conv2d; 2]>,
    output: Conv2d,
}

impl ResNet {
    pub fn new(p: &Path, cin: usize, hidden: usize, blocks: usize, cout: usize) -> Result<Self> {
        let blocks = (0..blocks)
            .map(|b| {
                let q = p.sub(format!("block{b}"));
                Ok([
                    Conv2d::new(&q.sub("conv1"), hidden, hidden, 3, same(3), true)?,
                    Conv2d::new(&q.sub("conv2"), hidden, hidden, 3, same(3), true)?,
                ])
            })
            .collect::<Result<_>>()?;
        Ok(ResNet {
            input: Conv2d::new(&p.sub("in"), cin, hidden, 3, same(3), true)?,
            blocks,
            output: zero_conv(&p.sub("out"), hidden, cout, 3)?,
        })
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = self.input.forward(x, train)?;
        for [a, b] in &self.blocks {
            let r = b.forward(&a.forward(&h.relu()?, train)?.relu()?, train)?;
            h = h.add(&r)?;
        }
        self.output.forward(&h.relu()?, train)
    }
}
