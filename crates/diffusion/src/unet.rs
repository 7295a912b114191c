//! The DDPM U-Net (Ho et al. 2020, in improved-diffusion's layout):
//! residual blocks GroupNorm → SiLU → conv3×3 with the time embedding
//! added between the two convs, self-attention at chosen resolutions and
//! in the middle, strided-conv down-sampling, nearest + conv up-sampling,
//! skip connections by concatenation. The last conv of every residual
//! branch, of every attention block and of the output is zero-initialised,
//! so each block starts as the identity.

use kiln_nn::{Conv2d, Dropout, Embedding, GroupNorm, Init, Linear, Module, Path};
use kiln_tensor::{Conv2dParams, DType, Error, Result, Tensor};

/// The network's layout (part of the model's config).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetShape {
    pub channels: usize,
    pub image_size: usize,
    /// Channels of the first level; level i has base · mults[i].
    pub base: usize,
    pub mults: Vec<usize>,
    pub res_blocks: usize,
    /// Resolutions (image sides) whose levels get a self-attention block after each residual block.
    pub attention: Vec<usize>,
    pub groups: usize,
    pub dropout: f64,
    /// Classes for conditional models (label embedding added to the time
    /// embedding, with one more row for the null label); 0: unconditional.
    pub classes: usize,
}

impl UNetShape {
    /// Width of the time embedding (4 · base, as in DDPM).
    pub fn embed_dim(&self) -> usize {
        4 * self.base
    }

    /// Why this layout cannot be built, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.base == 0 || self.mults.is_empty() || self.mults.contains(&0) || self.channels == 0 {
            return Err("base channels, every multiplier and the image channels must be at least 1".into());
        }
        let down = 1usize << (self.mults.len() - 1);
        if self.image_size == 0 || !self.image_size.is_multiple_of(down) {
            return Err(format!(
                "image size {} must be divisible by 2^{} for {} levels",
                self.image_size,
                self.mults.len() - 1,
                self.mults.len()
            ));
        }
        if self.groups == 0 || !self.base.is_multiple_of(self.groups) {
            return Err(format!("{} groups must divide the base channels {}", self.groups, self.base));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

/// cat[cos(t·f), sin(t·f)] with f_i = 10000^(−i/half) (improved-diffusion's
/// `timestep_embedding`), computed in f64 on the host: (n, dim).
pub fn timestep_embedding(t: &[f64], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; t.len() * dim];
    for (row, &ti) in out.chunks_mut(dim).zip(t) {
        for i in 0..half {
            let arg = ti * (-(10000f64.ln()) * i as f64 / half as f64).exp();
            row[i] = arg.cos() as f32;
            row[half + i] = arg.sin() as f32;
        }
    }
    out
}

fn conv3(p: &Path, cin: usize, cout: usize, stride: usize) -> Result<Conv2d> {
    Conv2d::new(p, cin, cout, 3, Conv2dParams { stride: [stride; 2], padding: [1, 1], ..Default::default() }, true)
}

fn conv1(p: &Path, cin: usize, cout: usize) -> Result<Conv2d> {
    Conv2d::new(p, cin, cout, 1, Conv2dParams::default(), true)
}

/// A conv whose weights and bias start at zero.
fn zero_conv(p: &Path, cin: usize, cout: usize, k: usize) -> Result<Conv2d> {
    let conv = if k == 3 { conv3(p, cin, cout, 1)? } else { conv1(p, cin, cout)? };
    p.reinit("weight", Init::Const(0.0))?;
    p.reinit("bias", Init::Const(0.0))?;
    Ok(conv)
}

struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb: Linear,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(p: &Path, cin: usize, cout: usize, s: &UNetShape) -> Result<Self> {
        Ok(ResBlock {
            norm1: GroupNorm::new(&p.sub("norm1"), s.groups, cin)?,
            conv1: conv3(&p.sub("conv1"), cin, cout, 1)?,
            emb: Linear::new(&p.sub("emb"), s.embed_dim(), cout, true)?,
            norm2: GroupNorm::new(&p.sub("norm2"), s.groups, cout)?,
            dropout: Dropout::new(&p.sub("dropout"), s.dropout),
            conv2: zero_conv(&p.sub("conv2"), cout, cout, 3)?,
            skip: if cin == cout { None } else { Some(conv1(&p.sub("skip"), cin, cout)?) },
        })
    }

    /// `emb_act` is SiLU(embedding), shared by every block.
    fn forward(&self, x: &Tensor, emb_act: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x, train)?.silu()?, train)?;
        let e = self.emb.forward(emb_act, train)?;
        let h = h.add(&e.reshape(&[e.shape()[0], e.shape()[1], 1, 1])?)?;
        let h = self.dropout.forward(&self.norm2.forward(&h, train)?.silu()?, train)?;
        let h = self.conv2.forward(&h, train)?;
        match &self.skip {
            Some(skip) => skip.forward(x, train)?.add(&h),
            None => x.add(&h),
        }
    }
}

/// Single-head self-attention over the h·w positions (DDPM's block),
/// through kiln's fused scaled_dot_product_attention.
struct AttnBlock {
    norm: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
}

impl AttnBlock {
    fn new(p: &Path, c: usize, s: &UNetShape) -> Result<Self> {
        Ok(AttnBlock {
            norm: GroupNorm::new(&p.sub("norm"), s.groups, c)?,
            qkv: conv1(&p.sub("qkv"), c, 3 * c)?,
            proj: zero_conv(&p.sub("proj"), c, c, 1)?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::Argument { op: "unet attention", msg: format!("input {:?} must be 4-D", x.shape()) });
        };
        let qkv = self.qkv.forward(&self.norm.forward(x, train)?, train)?.reshape(&[n, 3 * c, h * w])?;
        // (n, h·w, c) each: positions attend to positions.
        let part = |i: usize| qkv.narrow(1, i * c, c)?.transpose(1, 2);
        let a = Tensor::scaled_dot_product_attention(&part(0)?, &part(1)?, &part(2)?, None, false, None)?;
        let a = a.transpose(1, 2)?.reshape(&[n, c, h, w])?;
        x.add(&self.proj.forward(&a, train)?)
    }
}

enum Block {
    Res(ResBlock),
    Attn(AttnBlock),
    Down(Conv2d),
    /// Nearest ×2, then a 3×3 conv.
    Up(Conv2d),
}

impl Block {
    fn forward(&self, x: &Tensor, emb_act: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Block::Res(b) => b.forward(x, emb_act, train),
            Block::Attn(b) => b.forward(x, train),
            Block::Down(conv) => conv.forward(x, train),
            Block::Up(conv) => {
                let (h, w) = (x.shape()[2], x.shape()[3]);
                conv.forward(&x.upsample_nearest2d([2 * h, 2 * w])?, train)
            }
        }
    }
}

pub struct UNet {
    pub shape: UNetShape,
    time1: Linear,
    time2: Linear,
    label: Option<Embedding>,
    input: Conv2d,
    /// Each entry's output is kept for a skip connection.
    down: Vec<Vec<Block>>,
    middle: Vec<Block>,
    /// Each entry first concatenates one kept output.
    up: Vec<Vec<Block>>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl UNet {
    pub fn new(p: &Path, s: &UNetShape) -> Result<Self> {
        s.check().map_err(|msg| Error::Argument { op: "unet", msg })?;
        let e = s.embed_dim();
        let mut ch = s.base;
        let mut kept = vec![ch];
        let mut res = s.image_size;
        let mut down = vec![];
        let last = s.mults.len() - 1;
        for (level, &m) in s.mults.iter().enumerate() {
            for i in 0..s.res_blocks {
                let q = p.sub(format!("down.{level}.{i}"));
                let mut entry = vec![Block::Res(ResBlock::new(&q.sub("res"), ch, m * s.base, s)?)];
                ch = m * s.base;
                if s.attention.contains(&res) {
                    entry.push(Block::Attn(AttnBlock::new(&q.sub("attn"), ch, s)?));
                }
                down.push(entry);
                kept.push(ch);
            }
            if level != last {
                down.push(vec![Block::Down(conv3(&p.sub(format!("down.{level}.downsample")), ch, ch, 2)?)]);
                kept.push(ch);
                res /= 2;
            }
        }
        let middle = vec![
            Block::Res(ResBlock::new(&p.sub("mid.res1"), ch, ch, s)?),
            Block::Attn(AttnBlock::new(&p.sub("mid.attn"), ch, s)?),
            Block::Res(ResBlock::new(&p.sub("mid.res2"), ch, ch, s)?),
        ];
        let mut up = vec![];
        for (level, &m) in s.mults.iter().enumerate().rev() {
            for i in 0..=s.res_blocks {
                let q = p.sub(format!("up.{level}.{i}"));
                let skip = kept.pop().ok_or_else(|| Error::Argument { op: "unet", msg: "skip bookkeeping".into() })?;
                let mut entry = vec![Block::Res(ResBlock::new(&q.sub("res"), ch + skip, m * s.base, s)?)];
                ch = m * s.base;
                if s.attention.contains(&res) {
                    entry.push(Block::Attn(AttnBlock::new(&q.sub("attn"), ch, s)?));
                }
                if level != 0 && i == s.res_blocks {
                    entry.push(Block::Up(conv3(&q.sub("upsample"), ch, ch, 1)?));
                    res *= 2;
                }
                up.push(entry);
            }
        }
        let label = match s.classes {
            0 => None,
            k => Some(Embedding::new(&p.sub("label"), k + 1, e)?),
        };
        Ok(UNet {
            shape: s.clone(),
            time1: Linear::new(&p.sub("time.0"), s.base, e, true)?,
            time2: Linear::new(&p.sub("time.1"), e, e, true)?,
            label,
            input: conv3(&p.sub("input"), s.channels, s.base, 1)?,
            down,
            middle,
            up,
            out_norm: GroupNorm::new(&p.sub("out.norm"), s.groups, s.base)?,
            out_conv: zero_conv(&p.sub("out.conv"), s.base, s.channels, 3)?,
        })
    }

    /// The prediction for noisy images `x` (n, c, s, s) at timesteps `t`
    /// (n, as numbers, 0 … T − 1) and, for a conditional network, labels
    /// (n; `classes` is the null label).
    pub fn forward(&self, x: &Tensor, t: &[f64], labels: Option<&[usize]>, train: bool) -> Result<Tensor> {
        let n = x.shape()[0];
        if t.len() != n {
            return Err(Error::Argument { op: "unet", msg: format!("{} timesteps for a batch of {n}", t.len()) });
        }
        let sin = Tensor::from_vec(timestep_embedding(t, self.shape.base), &[n, self.shape.base], x.device())?;
        let sin = if x.dtype() == DType::F32 { sin } else { sin.to_dtype(x.dtype())? };
        let mut emb = self.time2.forward(&self.time1.forward(&sin, train)?.silu()?, train)?;
        match (&self.label, labels) {
            (Some(table), Some(y)) if y.len() == n && y.iter().all(|&k| k <= self.shape.classes) => {
                let idx: Vec<i64> = y.iter().map(|&k| k as i64).collect();
                emb = emb.add(&table.forward(&Tensor::indices(&idx, &[n], x.device())?, train)?)?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::Argument {
                    op: "unet",
                    msg: format!(
                        "a network for {} classes needs one label from 0 to {0} per image (the last is the null label)",
                        self.shape.classes
                    ),
                });
            }
        }
        let emb_act = emb.silu()?;
        let mut h = self.input.forward(x, train)?;
        let mut kept = vec![h.clone()];
        for entry in &self.down {
            for b in entry {
                h = b.forward(&h, &emb_act, train)?;
            }
            kept.push(h.clone());
        }
        for b in &self.middle {
            h = b.forward(&h, &emb_act, train)?;
        }
        for entry in &self.up {
            let skip = kept.pop().ok_or_else(|| Error::Argument { op: "unet", msg: "skip bookkeeping".into() })?;
            h = Tensor::cat(&[&h, &skip], 1)?;
            for b in entry {
                h = b.forward(&h, &emb_act, train)?;
            }
        }
        self.out_conv.forward(&self.out_norm.forward(&h, train)?.silu()?, train)
    }
}
