//! `Storage`: the one place that knows which backend holds the data. Each
//! primitive is a method with one match arm per backend; only the CPU arm
//! exists today (CUDA and wgpu are their own issues).

pub mod cpu;

use crate::ops::conv2d::ConvGeom;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::pool::PoolGeom;
use crate::ops::reduce::ReduceOp;
use crate::{DType, Device, Layout, Result};
pub use cpu::CpuStorage;
pub use cpu::attention::AttnGeom;

#[derive(Debug, Clone)]
pub enum Storage {
    Cpu(CpuStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }

    fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
        }
    }

    pub fn zeros(n: usize, dtype: DType, device: Device) -> Result<Storage> {
        Self::from_f64_fn(n, dtype, device, |_| 0.0)
    }

    pub fn from_f64_fn(n: usize, dtype: DType, device: Device, f: impl Fn(usize) -> f64) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::from_f64_fn(n, dtype, f))),
            other => Err(crate::device::unavailable(other)),
        }
    }

    pub fn to_f64_vec(&self, l: &Layout) -> Vec<f64> {
        self.cpu().to_f64_vec(l)
    }

    pub fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Storage> {
        Ok(Storage::Cpu(self.cpu().to_dtype(l, dtype)))
    }

    pub fn contiguous(&self, l: &Layout) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::copy::contiguous(self.cpu(), l)))
    }

    pub fn copy_into(&mut self, dl: &Layout, src: &Storage, sl: &Layout) -> Result<()> {
        match (self, src) {
            (Storage::Cpu(d), Storage::Cpu(s)) => cpu::copy::copy_into(d, dl, s, sl),
        }
    }

    pub fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::elementwise::unary(self.cpu(), l, op)?))
    }

    pub fn binary(&self, l: &Layout, rhs: &Storage, rl: &Layout, op: BinaryOp) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::elementwise::binary(self.cpu(), l, rhs.cpu(), rl, op)?))
    }

    pub fn where_cond(&self, l: &Layout, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::elementwise::where_cond(self.cpu(), l, a.cpu(), la, b.cpu(), lb)?))
    }

    pub fn reduce(&self, l: &Layout, dims: &[usize], op: ReduceOp) -> Result<(Storage, Storage)> {
        let (v, i) = cpu::reduce::reduce(self.cpu(), l, dims, op)?;
        Ok((Storage::Cpu(v), Storage::Cpu(i)))
    }

    pub fn softmax(&self, l: &Layout, dim: usize, log: bool) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::softmax::softmax(self.cpu(), l, dim, log)?))
    }

    pub fn matmul(&self, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::matmul::matmul(self.cpu(), l, rhs.cpu(), rl)?))
    }

    pub fn conv2d_fwd(&self, l: &Layout, w: &Storage, lw: &Layout, g: ConvGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::conv2d::conv2d_fwd(self.cpu(), l, w.cpu(), lw, g)?))
    }

    pub fn conv2d_bwd_input(&self, l: &Layout, w: &Storage, lw: &Layout, g: ConvGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::conv2d::conv2d_bwd_input(self.cpu(), l, w.cpu(), lw, g)?))
    }

    pub fn conv2d_bwd_weight(&self, l: &Layout, dy: &Storage, ldy: &Layout, g: ConvGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::conv2d::conv2d_bwd_weight(self.cpu(), l, dy.cpu(), ldy, g)?))
    }

    pub fn avg_pool2d_fwd(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::pool::avg_pool2d_fwd(self.cpu(), l, g)?))
    }

    pub fn avg_pool2d_bwd(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::pool::avg_pool2d_bwd(self.cpu(), l, g)?))
    }

    pub fn max_pool2d_indices(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::pool::max_pool2d_indices(self.cpu(), l, g)?))
    }

    pub fn gather(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::index::gather(self.cpu(), l, dim, idx.cpu(), li)?))
    }

    pub fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        idx: &Storage,
        li: &Layout,
        out_shape: &[usize],
    ) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::index::scatter_add(self.cpu(), l, dim, idx.cpu(), li, out_shape)?))
    }

    pub fn index_select(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::index::index_select(self.cpu(), l, dim, idx.cpu(), li)?))
    }

    pub fn index_add(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout, len: usize) -> Result<Storage> {
        Ok(Storage::Cpu(cpu::index::index_add(self.cpu(), l, dim, idx.cpu(), li, len)?))
    }

    pub fn batch_norm_stats(&self, l: &Layout) -> Result<(Storage, Storage)> {
        let (m, v) = cpu::batch_norm::batch_norm_stats(self.cpu(), l)?;
        Ok((Storage::Cpu(m), Storage::Cpu(v)))
    }

    pub fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Storage,
        invstd: &Storage,
        w: Option<&Storage>,
        b: Option<&Storage>,
    ) -> Result<Storage> {
        let y = cpu::batch_norm::batch_norm_apply(
            self.cpu(),
            l,
            mean.cpu(),
            invstd.cpu(),
            w.map(Self::cpu),
            b.map(Self::cpu),
        )?;
        Ok(Storage::Cpu(y))
    }

    pub fn batch_norm_bwd(
        &self,
        l: &Layout,
        dy: &Storage,
        ldy: &Layout,
        mean: &Storage,
        invstd: &Storage,
        w: Option<&Storage>,
    ) -> Result<(Storage, Storage, Storage)> {
        let (a, b, c) =
            cpu::batch_norm::batch_norm_bwd(self.cpu(), l, dy.cpu(), ldy, mean.cpu(), invstd.cpu(), w.map(Self::cpu))?;
        Ok((Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)))
    }

    pub fn adam_update(
        &mut self,
        g: &Storage,
        lg: &Layout,
        m: &mut Storage,
        v: &mut Storage,
        s: &crate::ops::adam::AdamStep,
    ) -> Result<()> {
        match (self, g, m, v) {
            (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => {
                cpu::adam::adam_update(p, g, lg, m, v, s)
            }
        }
    }

    pub fn attention_fwd(
        q: (&Storage, &Layout),
        k: (&Storage, &Layout),
        v: (&Storage, &Layout),
        mask: Option<(&Storage, &Layout)>,
        g: AttnGeom,
    ) -> Result<(Storage, Storage)> {
        let (o, lse) = cpu::attention::attention_fwd(on_cpu(q), on_cpu(k), on_cpu(v), mask.map(on_cpu), g)?;
        Ok((Storage::Cpu(o), Storage::Cpu(lse)))
    }

    pub fn attention_bwd(
        t: [(&Storage, &Layout); 6],
        mask: Option<(&Storage, &Layout)>,
        g: AttnGeom,
        want_ds: bool,
    ) -> Result<[Storage; 4]> {
        let r = cpu::attention::attention_bwd(t.map(on_cpu), mask.map(on_cpu), g, want_ds)?;
        Ok(r.map(Storage::Cpu))
    }
}

fn on_cpu<'a>((s, l): (&'a Storage, &'a Layout)) -> (&'a CpuStorage, &'a Layout) {
    (s.cpu(), l)
}
