//! A multi-scale flow as a list of nodes: invertible layers, and splits
//! that factor half of the channels out to their own prior. RealNVP and
//! Glow are two ways of filling the list.

use kiln_nn::{Conv2d, Module};
use kiln_tensor::{Error, Result, Rng, Tensor, Var};

use crate::layers::Layer;

const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// The density of a latent.
pub enum Prior {
    /// N(0, I) (RealNVP).
    Standard,
    /// Glow's split prior: the factored-out half's mean and log-std from a
    /// zero-initialised conv on the half that stays.
    Conditional(Conv2d),
    /// Glow's top prior: a learned mean and log-std per channel.
    Learned { mean: Var, logs: Var },
}

impl Prior {
    /// (mean, log-std), or None for N(0, I).
    fn params(&self, cond: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        match (self, cond) {
            (Prior::Standard, _) => Ok(None),
            (Prior::Learned { mean, logs }, _) => Ok(Some((mean.as_tensor().clone(), logs.as_tensor().clone()))),
            (Prior::Conditional(conv), Some(c)) => {
                let h = conv.forward(c, true)?;
                let k = h.shape()[1] / 2;
                Ok(Some((h.narrow(1, 0, k)?, h.narrow(1, k, k)?)))
            }
            (Prior::Conditional(_), None) => {
                Err(Error::Argument { op: "flow prior", msg: "a split prior needs the kept half".into() })
            }
        }
    }

    /// log p(z) per image, (n,).
    pub fn log_prob(&self, z: &Tensor, cond: Option<&Tensor>) -> Result<Tensor> {
        let elems = match self.params(cond)? {
            None => z.sqr()?.mul_scalar(-0.5)?.add_scalar(-0.5 * LN_2PI)?,
            Some((mean, logs)) => {
                let d = z.sub(&mean)?.mul(&logs.neg()?.exp()?)?;
                d.sqr()?.mul_scalar(-0.5)?.sub(&logs)?.add_scalar(-0.5 * LN_2PI)?
            }
        };
        elems.sum(&[1, 2, 3], false)
    }

    /// z = mean + T · std · ε, ε ~ N(0, I) from `rng`, of `shape`.
    pub fn sample(
        &self,
        shape: &[usize],
        cond: Option<&Tensor>,
        temperature: f64,
        like: &Tensor,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let eps = Tensor::randn(shape, 0.0, temperature, like.dtype(), like.device(), rng)?;
        match self.params(cond)? {
            None => Ok(eps),
            Some((mean, logs)) => eps.mul(&logs.exp()?)?.add(&mean),
        }
    }
}

pub enum Node {
    Layer(Box<dyn Layer>),
    /// Keeps the first ⌊c/2⌋ channels; the other `channels` leave with `prior`.
    Split {
        prior: Prior,
        channels: usize,
    },
}

/// What `encode` returns.
pub struct Encoded {
    pub latents: Vec<Tensor>,
    /// Σ log p(z) over the latents, per image (n,).
    pub log_prior: Tensor,
    /// Σ log|det J| over the layers, per image (n,).
    pub log_det: Tensor,
}

impl Encoded {
    /// log p(x) per image.
    pub fn log_prob(&self) -> Result<Tensor> {
        self.log_prior.add(&self.log_det)
    }
}

pub struct FlowNet {
    pub nodes: Vec<Node>,
    pub top: Prior,
    /// (c, h, w) of the input and of the top latent.
    pub input: [usize; 3],
    pub top_shape: [usize; 3],
}

impl FlowNet {
    fn check(&self, x: &Tensor, op: &'static str) -> Result<()> {
        if x.rank() != 4 || x.shape()[1..] != self.input {
            return Err(Error::Argument { op, msg: format!("expects (n, {:?}), got {:?}", self.input, x.shape()) });
        }
        Ok(())
    }

    /// The latents (each split's in order, then the top) and, per image,
    /// the priors' log-density and the layers' summed log-det.
    pub fn encode(&self, x: &Tensor, init: bool) -> Result<Encoded> {
        self.check(x, "flow encode")?;
        let n = x.shape()[0];
        let mut h = x.clone();
        let mut log_det = Tensor::zeros(&[n], x.dtype(), x.device())?;
        let mut log_prior = log_det.clone();
        let mut latents = vec![];
        for node in &self.nodes {
            match node {
                Node::Layer(layer) => {
                    let (y, ld) = layer.forward(&h, init)?;
                    log_det = log_det.add(&ld)?;
                    h = y;
                }
                Node::Split { prior, channels } => {
                    let keep = h.shape()[1] - channels;
                    let (z1, z2) = (h.narrow(1, 0, keep)?, h.narrow(1, keep, *channels)?);
                    log_prior = log_prior.add(&prior.log_prob(&z2, Some(&z1))?)?;
                    latents.push(z2);
                    h = z1;
                }
            }
        }
        log_prior = log_prior.add(&self.top.log_prob(&h, None)?)?;
        latents.push(h);
        Ok(Encoded { latents, log_prior, log_det })
    }

    /// The exact inverse of `encode`'s latents.
    pub fn decode(&self, latents: &[Tensor]) -> Result<Tensor> {
        let splits = self.nodes.iter().filter(|n| matches!(n, Node::Split { .. })).count();
        if latents.len() != splits + 1 {
            return Err(Error::Argument {
                op: "flow decode",
                msg: format!("{} latents for a flow with {} splits", latents.len(), splits),
            });
        }
        let mut rest = latents[..splits].iter().rev();
        let mut h = latents[splits].clone();
        for node in self.nodes.iter().rev() {
            h = match node {
                Node::Layer(layer) => layer.inverse(&h)?,
                Node::Split { .. } => Tensor::cat(
                    &[
                        &h,
                        rest.next()
                            .ok_or_else(|| Error::Argument { op: "flow decode", msg: "latents ran out".into() })?,
                    ],
                    1,
                )?,
            };
        }
        Ok(h)
    }

    /// n draws at temperature T: each latent from its prior with the
    /// standard deviation scaled by T, inverted through the layers.
    pub fn sample(&self, n: usize, temperature: f64, like: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let [c, hh, ww] = self.top_shape;
        let mut h = self.top.sample(&[n, c, hh, ww], None, temperature, like, rng)?;
        for node in self.nodes.iter().rev() {
            h = match node {
                Node::Layer(layer) => layer.inverse(&h)?,
                Node::Split { prior, channels } => {
                    let s = h.shape().to_vec();
                    let z2 = prior.sample(&[n, *channels, s[2], s[3]], Some(&h), temperature, like, rng)?;
                    Tensor::cat(&[&h, &z2], 1)?
                }
            };
        }
        Ok(h)
    }
}
