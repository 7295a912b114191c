//! The conditional GAN's other generator (`--conditional-bn`): the DCGAN
//! generator with each BatchNorm's affine replaced by a per-class one,
//! y = γ[c]·x̂ + β[c] (conditional batch norm, de Vries et al. 2017; the
//! generator of Miyato & Koyama 2018). The label enters every stage instead
//! of only the input.

use kiln_nn::layers::count_batch;
use kiln_nn::{ConvTranspose2d, Embedding, Init, Module, Path};
use kiln_tensor::{Result, Tensor};

use crate::dcgan::{DcganConfig, up};
use crate::sagan::SelfAttention;

/// Batch statistics (running ones in eval, torch's buffer names) without
/// an affine of its own, then γ and β looked up by class.
pub struct ConditionalBatchNorm2d {
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    pub gamma: Embedding,
    pub beta: Embedding,
    /// As BatchNorm2d's: None = the cumulative average.
    pub momentum: Option<f64>,
    pub eps: f64,
}

impl ConditionalBatchNorm2d {
    /// γ starts at 1 and β at 0: at first every class shares plain batch norm.
    pub fn new(p: &Path, classes: usize, channels: usize) -> Result<Self> {
        let norm = ConditionalBatchNorm2d {
            running_mean: p.buffer("running_mean", &[channels], 0.0)?,
            running_var: p.buffer("running_var", &[channels], 1.0)?,
            num_batches_tracked: p.buffer("num_batches_tracked", &[], 0.0)?,
            gamma: Embedding::new(&p.sub("gamma"), classes, channels)?,
            beta: Embedding::new(&p.sub("beta"), classes, channels)?,
            momentum: Some(0.1),
            eps: 1e-5,
        };
        p.reinit("gamma.weight", Init::Const(1.0))?;
        p.reinit("beta.weight", Init::Const(0.0))?;
        Ok(norm)
    }

    pub fn forward(&self, x: &Tensor, labels: &Tensor, train: bool) -> Result<Tensor> {
        let momentum = count_batch(&self.num_batches_tracked, self.momentum, train)?;
        let (rm, rv) = (Some(&self.running_mean), Some(&self.running_var));
        let normed = x.batch_norm(rm, rv, None, None, train, momentum, self.eps)?;
        let per_image = [x.shape()[0], x.shape()[1], 1, 1];
        let gamma = self.gamma.forward(labels, train)?.reshape(&per_image)?;
        let beta = self.beta.forward(labels, train)?.reshape(&per_image)?;
        normed.mul(&gamma)?.add(&beta)
    }
}

/// The DCGAN generator's stages (transposed conv, conditional batch norm,
/// ReLU; self-attention where asked), module indices as in `generator`.
pub struct ConditionalGenerator {
    stages: Vec<(ConvTranspose2d, ConditionalBatchNorm2d, Option<SelfAttention>)>,
    last: ConvTranspose2d,
}

impl ConditionalGenerator {
    pub fn new(p: &Path, c: &DcganConfig, classes: usize) -> Result<Self> {
        let n = crate::dcgan::stages(c.image_size)?;
        let (mut i, mut side, mut stages) = (0, 4, vec![]);
        let mut cin = c.nz;
        for s in 0..n {
            let cout = c.ngf << (n - 1 - s);
            let conv = ConvTranspose2d::new(&p.sub(i), cin, cout, 4, if s == 0 { up(1, 0) } else { up(2, 1) }, false)?;
            let norm = ConditionalBatchNorm2d::new(&p.sub(i + 1), classes, cout)?;
            // i + 2 is the ReLU, which has no parameters.
            i += 3;
            let attention = if c.self_attention == side {
                i += 1;
                Some(SelfAttention::new(&p.sub(i - 1), cout)?)
            } else {
                None
            };
            stages.push((conv, norm, attention));
            (cin, side) = (cout, side * 2);
        }
        let last = ConvTranspose2d::new(&p.sub(i), c.ngf, c.nc, 4, up(2, 1), false)?;
        Ok(ConditionalGenerator { stages, last })
    }

    /// Images in [-1, 1] from z (n, nz, 1, 1) and i64 labels (n).
    pub fn forward(&self, z: &Tensor, labels: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = z.clone();
        for (conv, norm, attention) in &self.stages {
            h = norm.forward(&conv.forward(&h, train)?, labels, train)?.relu()?;
            if let Some(a) = attention {
                h = a.forward(&h, train)?;
            }
        }
        self.last.forward(&h, train)?.tanh()
    }
}
