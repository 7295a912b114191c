//! `Storage`: the one place that knows which backend holds the data. Each
//! primitive is a method with one match arm per backend (CPU and wgpu today;
//! CUDA is its own issue). Operands on different devices are an error.

pub mod cpu;
pub mod cuda;
pub mod gpu;
pub mod wgpu;

use crate::ops::conv2d::ConvGeom;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::pool::PoolGeom;
use crate::ops::reduce::ReduceOp;
use crate::{DType, Device, Error, Layout, Result};
pub use cpu::CpuStorage;
pub use cpu::attention::AttnGeom;
pub use cuda::CudaStorage;
use gpu::GpuBuf;
pub use wgpu::WgpuStorage;

#[derive(Debug, Clone)]
pub enum Storage {
    Cpu(CpuStorage),
    Wgpu(WgpuStorage),
    Cuda(CudaStorage),
}

/// Both operands' backend storages, or a device-mismatch error naming `op`.
/// The GPU arm is written once: `$G` names the variant (Wgpu or Cuda) and
/// the shared launch code in `gpu/` is generic over both.
macro_rules! pair {
    ($op:expr, $a:expr, $b:expr, cpu($x:ident, $y:ident) => $cpu:expr, gpu($u:ident, $v:ident, $G:ident) => $gpu:expr) => {
        match ($a, $b) {
            (Storage::Cpu($x), Storage::Cpu($y)) => $cpu,
            (Storage::Wgpu($u), Storage::Wgpu($v)) => {
                #[allow(unused_imports)]
                use $crate::backend::Storage::Wgpu as $G;
                $gpu
            }
            (Storage::Cuda($u), Storage::Cuda($v)) => {
                #[allow(unused_imports)]
                use $crate::backend::Storage::Cuda as $G;
                $gpu
            }
            (a, b) => Err(Error::DeviceMismatch { op: $op, lhs: a.device(), rhs: b.device() }),
        }
    };
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Wgpu(s) => s.device(),
            Storage::Cuda(s) => s.device(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Wgpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    fn mismatch(op: &'static str, a: &Storage, b: &Storage) -> Error {
        Error::DeviceMismatch { op, lhs: a.device(), rhs: b.device() }
    }

    fn cpu_of<'a>(&self, op: &'static str, other: &'a Storage) -> Result<&'a CpuStorage> {
        match other {
            Storage::Cpu(s) => Ok(s),
            o => Err(Self::mismatch(op, self, o)),
        }
    }

    fn cuda_of<'a>(&self, op: &'static str, other: &'a Storage) -> Result<&'a CudaStorage> {
        match other {
            Storage::Cuda(s) => Ok(s),
            o => Err(Self::mismatch(op, self, o)),
        }
    }

    fn wgpu_of<'a>(&self, op: &'static str, other: &'a Storage) -> Result<&'a WgpuStorage> {
        match other {
            Storage::Wgpu(s) => Ok(s),
            o => Err(Self::mismatch(op, self, o)),
        }
    }

    pub fn zeros(n: usize, dtype: DType, device: Device) -> Result<Storage> {
        Self::from_f64_fn(n, dtype, device, |_| 0.0)
    }

    pub fn from_f64_fn(n: usize, dtype: DType, device: Device, f: impl Fn(usize) -> f64) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::from_f64_fn(n, dtype, f))),
            Device::Wgpu(i) => {
                let dev = wgpu::wgpu_device(i)?;
                Ok(Storage::Wgpu(WgpuStorage::from_f64_fn(&dev, n, dtype, f)?))
            }
            Device::Cuda(i) => {
                let dev = cuda::cuda_device(i)?;
                Ok(Storage::Cuda(CudaStorage::from_f64_fn(&dev, n, dtype, f)?))
            }
        }
    }

    pub fn to_f64_vec(&self, l: &Layout) -> Result<Vec<f64>> {
        match self {
            Storage::Cpu(s) => Ok(s.to_f64_vec(l)),
            Storage::Wgpu(s) => gpu::to_f64_vec(s, l),
            Storage::Cuda(s) => gpu::to_f64_vec(s, l),
        }
    }

    pub fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(s.to_dtype(l, dtype))),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::copy::to_dtype(s, l, dtype)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::copy::to_dtype(s, l, dtype)?)),
        }
    }

    /// A dense copy of the view on `device` (host round trip between backends).
    pub fn to_device(&self, l: &Layout, device: Device) -> Result<Storage> {
        if device == self.device() {
            return self.contiguous(l);
        }
        let vals = self.to_f64_vec(l)?;
        Self::from_f64_fn(vals.len(), self.dtype(), device, |i| vals[i])
    }

    pub fn contiguous(&self, l: &Layout) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::copy::contiguous(s, l))),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::copy::contiguous(s, l)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::copy::contiguous(s, l)?)),
        }
    }

    pub fn copy_into(&mut self, dl: &Layout, src: &Storage, sl: &Layout) -> Result<()> {
        pair!("copy", self, src,
            cpu(d, s) => cpu::copy::copy_into(d, dl, s, sl),
            gpu(d, s, _G) => gpu::copy::copy_into(d, dl, s, sl))
    }

    pub fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::elementwise::unary(s, l, op)?)),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::elementwise::unary(s, l, op)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::elementwise::unary(s, l, op)?)),
        }
    }

    pub fn binary(&self, l: &Layout, rhs: &Storage, rl: &Layout, op: BinaryOp) -> Result<Storage> {
        pair!(op.name(), self, rhs,
            cpu(a, b) => Ok(Storage::Cpu(cpu::elementwise::binary(a, l, b, rl, op)?)),
            gpu(a, b, G) => Ok(G(gpu::elementwise::binary(a, l, b, rl, op)?)))
    }

    pub fn where_cond(&self, l: &Layout, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Result<Storage> {
        const OP: &str = "where_cond";
        match self {
            Storage::Cpu(m) => {
                Ok(Storage::Cpu(cpu::elementwise::where_cond(m, l, self.cpu_of(OP, a)?, la, self.cpu_of(OP, b)?, lb)?))
            }
            Storage::Wgpu(m) => Ok(Storage::Wgpu(gpu::elementwise::where_cond(
                m,
                l,
                self.wgpu_of(OP, a)?,
                la,
                self.wgpu_of(OP, b)?,
                lb,
            )?)),
            Storage::Cuda(m) => Ok(Storage::Cuda(gpu::elementwise::where_cond(
                m,
                l,
                self.cuda_of(OP, a)?,
                la,
                self.cuda_of(OP, b)?,
                lb,
            )?)),
        }
    }

    pub fn reduce(&self, l: &Layout, dims: &[usize], op: ReduceOp) -> Result<(Storage, Storage)> {
        match self {
            Storage::Cpu(s) => {
                let (v, i) = cpu::reduce::reduce(s, l, dims, op)?;
                Ok((Storage::Cpu(v), Storage::Cpu(i)))
            }
            Storage::Wgpu(s) => {
                let (v, i) = gpu::reduce::reduce(s, l, dims, op)?;
                Ok((Storage::Wgpu(v), Storage::Wgpu(i)))
            }
            Storage::Cuda(s) => {
                let (v, i) = gpu::reduce::reduce(s, l, dims, op)?;
                Ok((Storage::Cuda(v), Storage::Cuda(i)))
            }
        }
    }

    pub fn softmax(&self, l: &Layout, dim: usize, log: bool) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::softmax::softmax(s, l, dim, log)?)),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::softmax::softmax(s, l, dim, log)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::softmax::softmax(s, l, dim, log)?)),
        }
    }

    pub fn matmul(&self, l: &Layout, rhs: &Storage, rl: &Layout) -> Result<Storage> {
        pair!("matmul", self, rhs,
            cpu(a, b) => Ok(Storage::Cpu(cpu::matmul::matmul(a, l, b, rl)?)),
            gpu(a, b, G) => Ok(G(gpu::matmul::matmul(a, l, b, rl)?)))
    }

    pub fn conv2d_fwd(&self, l: &Layout, w: &Storage, lw: &Layout, g: ConvGeom) -> Result<Storage> {
        pair!("conv2d", self, w,
            cpu(x, w) => Ok(Storage::Cpu(cpu::conv2d::conv2d_fwd(x, l, w, lw, g)?)),
            gpu(x, w, G) => Ok(G(gpu::conv2d::conv2d_fwd(x, l, w, lw, g)?)))
    }

    pub fn conv2d_bwd_input(&self, l: &Layout, w: &Storage, lw: &Layout, g: ConvGeom) -> Result<Storage> {
        pair!("conv2d_bwd_input", self, w,
            cpu(dy, w) => Ok(Storage::Cpu(cpu::conv2d::conv2d_bwd_input(dy, l, w, lw, g)?)),
            gpu(dy, w, G) => Ok(G(gpu::conv2d::conv2d_bwd_input(dy, l, w, lw, g)?)))
    }

    pub fn conv2d_bwd_weight(&self, l: &Layout, dy: &Storage, ldy: &Layout, g: ConvGeom) -> Result<Storage> {
        pair!("conv2d_bwd_weight", self, dy,
            cpu(x, dy) => Ok(Storage::Cpu(cpu::conv2d::conv2d_bwd_weight(x, l, dy, ldy, g)?)),
            gpu(x, dy, G) => Ok(G(gpu::conv2d::conv2d_bwd_weight(x, l, dy, ldy, g)?)))
    }

    pub fn avg_pool2d_fwd(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::pool::avg_pool2d_fwd(s, l, g)?)),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::pool::avg_pool2d_fwd(s, l, g)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::pool::avg_pool2d_fwd(s, l, g)?)),
        }
    }

    pub fn avg_pool2d_bwd(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::pool::avg_pool2d_bwd(s, l, g)?)),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::pool::avg_pool2d_bwd(s, l, g)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::pool::avg_pool2d_bwd(s, l, g)?)),
        }
    }

    pub fn max_pool2d_indices(&self, l: &Layout, g: PoolGeom) -> Result<Storage> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::pool::max_pool2d_indices(s, l, g)?)),
            Storage::Wgpu(s) => Ok(Storage::Wgpu(gpu::pool::max_pool2d_indices(s, l, g)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(gpu::pool::max_pool2d_indices(s, l, g)?)),
        }
    }

    pub fn gather(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        pair!("gather", self, idx,
            cpu(x, i) => Ok(Storage::Cpu(cpu::index::gather(x, l, dim, i, li)?)),
            gpu(x, i, G) => Ok(G(gpu::index::gather(x, l, dim, i, li)?)))
    }

    pub fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        idx: &Storage,
        li: &Layout,
        out_shape: &[usize],
    ) -> Result<Storage> {
        pair!("scatter_add", self, idx,
            cpu(x, i) => Ok(Storage::Cpu(cpu::index::scatter_add(x, l, dim, i, li, out_shape)?)),
            gpu(x, i, G) => Ok(G(gpu::index::scatter_add(x, l, dim, i, li, out_shape)?)))
    }

    pub fn index_select(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout) -> Result<Storage> {
        pair!("index_select", self, idx,
            cpu(x, i) => Ok(Storage::Cpu(cpu::index::index_select(x, l, dim, i, li)?)),
            gpu(x, i, G) => Ok(G(gpu::index::index_select(x, l, dim, i, li)?)))
    }

    pub fn index_add(&self, l: &Layout, dim: usize, idx: &Storage, li: &Layout, len: usize) -> Result<Storage> {
        pair!("index_add", self, idx,
            cpu(x, i) => Ok(Storage::Cpu(cpu::index::index_add(x, l, dim, i, li, len)?)),
            gpu(x, i, G) => Ok(G(gpu::index::index_add(x, l, dim, i, li, len)?)))
    }

    /// group_norm's fused CPU forward: Some((y, mean, rstd)) on the CPU;
    /// None on the GPUs, where group_norm runs as batch_norm on a view.
    pub fn group_norm_fwd(
        &self,
        l: &Layout,
        groups: usize,
        w: Option<&Storage>,
        b: Option<&Storage>,
        eps: f64,
    ) -> Result<Option<(Storage, Storage, Storage)>> {
        let (Storage::Cpu(s), Some(w), Some(b)) = (self, cpu_parts(w), cpu_parts(b)) else { return Ok(None) };
        let (y, m, r) = cpu::group_norm::group_norm_fwd(s, l, groups, w, b, eps)?;
        Ok(Some((Storage::Cpu(y), Storage::Cpu(m), Storage::Cpu(r))))
    }

    /// group_norm's fused CPU backward (dx, dw, db); None off the CPU.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm_bwd(
        &self,
        l: &Layout,
        dy: &Storage,
        ldy: &Layout,
        groups: usize,
        mean: &Storage,
        rstd: &Storage,
        w: Option<&Storage>,
    ) -> Result<Option<(Storage, Storage, Storage)>> {
        let (Storage::Cpu(x), Storage::Cpu(d), Storage::Cpu(m), Storage::Cpu(r), Some(w)) =
            (self, dy, mean, rstd, cpu_parts(w))
        else {
            return Ok(None);
        };
        let (dx, dw, db) = cpu::group_norm::group_norm_bwd(x, l, d, ldy, groups, m, r, w)?;
        Ok(Some((Storage::Cpu(dx), Storage::Cpu(dw), Storage::Cpu(db))))
    }

    pub fn batch_norm_stats(&self, l: &Layout) -> Result<(Storage, Storage)> {
        match self {
            Storage::Cpu(s) => {
                let (m, v) = cpu::batch_norm::batch_norm_stats(s, l)?;
                Ok((Storage::Cpu(m), Storage::Cpu(v)))
            }
            Storage::Wgpu(s) => {
                let (m, v) = gpu::batch_norm::batch_norm_stats(s, l)?;
                Ok((Storage::Wgpu(m), Storage::Wgpu(v)))
            }
            Storage::Cuda(s) => {
                let (m, v) = gpu::batch_norm::batch_norm_stats(s, l)?;
                Ok((Storage::Cuda(m), Storage::Cuda(v)))
            }
        }
    }

    pub fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Storage,
        invstd: &Storage,
        w: Option<&Storage>,
        b: Option<&Storage>,
    ) -> Result<Storage> {
        const OP: &str = "batch_norm";
        match self {
            Storage::Cpu(x) => {
                let w = w.map(|w| self.cpu_of(OP, w)).transpose()?;
                let b = b.map(|b| self.cpu_of(OP, b)).transpose()?;
                let (m, i) = (self.cpu_of(OP, mean)?, self.cpu_of(OP, invstd)?);
                Ok(Storage::Cpu(cpu::batch_norm::batch_norm_apply(x, l, m, i, w, b)?))
            }
            Storage::Wgpu(x) => {
                let w = w.map(|w| self.wgpu_of(OP, w)).transpose()?;
                let b = b.map(|b| self.wgpu_of(OP, b)).transpose()?;
                let (m, i) = (self.wgpu_of(OP, mean)?, self.wgpu_of(OP, invstd)?);
                Ok(Storage::Wgpu(gpu::batch_norm::batch_norm_apply(x, l, m, i, w, b)?))
            }
            Storage::Cuda(x) => {
                let w = w.map(|w| self.cuda_of(OP, w)).transpose()?;
                let b = b.map(|b| self.cuda_of(OP, b)).transpose()?;
                let (m, i) = (self.cuda_of(OP, mean)?, self.cuda_of(OP, invstd)?);
                Ok(Storage::Cuda(gpu::batch_norm::batch_norm_apply(x, l, m, i, w, b)?))
            }
        }
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
        const OP: &str = "batch_norm_bwd";
        match self {
            Storage::Cpu(x) => {
                let w = w.map(|w| self.cpu_of(OP, w)).transpose()?;
                let (d, m, i) = (self.cpu_of(OP, dy)?, self.cpu_of(OP, mean)?, self.cpu_of(OP, invstd)?);
                let (a, b, c) = cpu::batch_norm::batch_norm_bwd(x, l, d, ldy, m, i, w)?;
                Ok((Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)))
            }
            Storage::Wgpu(x) => {
                let w = w.map(|w| self.wgpu_of(OP, w)).transpose()?;
                let (d, m, i) = (self.wgpu_of(OP, dy)?, self.wgpu_of(OP, mean)?, self.wgpu_of(OP, invstd)?);
                let (a, b, c) = gpu::batch_norm::batch_norm_bwd(x, l, d, ldy, m, i, w)?;
                Ok((Storage::Wgpu(a), Storage::Wgpu(b), Storage::Wgpu(c)))
            }
            Storage::Cuda(x) => {
                let w = w.map(|w| self.cuda_of(OP, w)).transpose()?;
                let (d, m, i) = (self.cuda_of(OP, dy)?, self.cuda_of(OP, mean)?, self.cuda_of(OP, invstd)?);
                let (a, b, c) = gpu::batch_norm::batch_norm_bwd(x, l, d, ldy, m, i, w)?;
                Ok((Storage::Cuda(a), Storage::Cuda(b), Storage::Cuda(c)))
            }
        }
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
            (Storage::Wgpu(p), Storage::Wgpu(g), Storage::Wgpu(m), Storage::Wgpu(v)) => {
                gpu::adam::adam_update(p, g, lg, m, v, s)
            }
            (Storage::Cuda(p), Storage::Cuda(g), Storage::Cuda(m), Storage::Cuda(v)) => {
                gpu::adam::adam_update(p, g, lg, m, v, s)
            }
            (p, g, ..) => Err(Error::DeviceMismatch { op: "adam_update", lhs: p.device(), rhs: g.device() }),
        }
    }

    pub fn attention_fwd(
        q: (&Storage, &Layout),
        k: (&Storage, &Layout),
        v: (&Storage, &Layout),
        mask: Option<(&Storage, &Layout)>,
        g: AttnGeom,
    ) -> Result<(Storage, Storage)> {
        const OP: &str = "scaled_dot_product_attention";
        match q.0 {
            Storage::Cpu(_) => {
                let c = |t| on_cpu(OP, q.0, t);
                let mask = mask.map(c).transpose()?;
                let (o, lse) = cpu::attention::attention_fwd(c(q)?, c(k)?, c(v)?, mask, g)?;
                Ok((Storage::Cpu(o), Storage::Cpu(lse)))
            }
            Storage::Wgpu(_) => {
                let c = |t| on_wgpu(OP, q.0, t);
                let mask = mask.map(c).transpose()?;
                let (o, lse) = gpu::attention::attention_fwd(c(q)?, c(k)?, c(v)?, mask, g)?;
                Ok((Storage::Wgpu(o), Storage::Wgpu(lse)))
            }
            Storage::Cuda(_) => {
                let c = |t| on_cuda(OP, q.0, t);
                let mask = mask.map(c).transpose()?;
                let (o, lse) = gpu::attention::attention_fwd(c(q)?, c(k)?, c(v)?, mask, g)?;
                Ok((Storage::Cuda(o), Storage::Cuda(lse)))
            }
        }
    }

    pub fn attention_bwd(
        t: [(&Storage, &Layout); 6],
        mask: Option<(&Storage, &Layout)>,
        g: AttnGeom,
        want_ds: bool,
    ) -> Result<[Storage; 4]> {
        const OP: &str = "scaled_dot_product_attention_bwd";
        let first = t[0].0;
        match first {
            Storage::Cpu(_) => {
                let c = |t| on_cpu(OP, first, t);
                let views = [c(t[0])?, c(t[1])?, c(t[2])?, c(t[3])?, c(t[4])?, c(t[5])?];
                let r = cpu::attention::attention_bwd(views, mask.map(c).transpose()?, g, want_ds)?;
                Ok(r.map(Storage::Cpu))
            }
            Storage::Wgpu(_) => {
                let c = |t| on_wgpu(OP, first, t);
                let views = [c(t[0])?, c(t[1])?, c(t[2])?, c(t[3])?, c(t[4])?, c(t[5])?];
                let r = gpu::attention::attention_bwd(views, mask.map(c).transpose()?, g, want_ds)?;
                Ok(r.map(Storage::Wgpu))
            }
            Storage::Cuda(_) => {
                let c = |t| on_cuda(OP, first, t);
                let views = [c(t[0])?, c(t[1])?, c(t[2])?, c(t[3])?, c(t[4])?, c(t[5])?];
                let r = gpu::attention::attention_bwd(views, mask.map(c).transpose()?, g, want_ds)?;
                Ok(r.map(Storage::Cuda))
            }
        }
    }
}

type View<'a, S> = (&'a S, &'a Layout);

fn on_cpu<'a>(op: &'static str, first: &Storage, t: View<'a, Storage>) -> Result<View<'a, CpuStorage>> {
    Ok((first.cpu_of(op, t.0)?, t.1))
}

fn on_cuda<'a>(op: &'static str, first: &Storage, t: View<'a, Storage>) -> Result<View<'a, CudaStorage>> {
    Ok((first.cuda_of(op, t.0)?, t.1))
}

fn on_wgpu<'a>(op: &'static str, first: &Storage, t: View<'a, Storage>) -> Result<View<'a, WgpuStorage>> {
    Ok((first.wgpu_of(op, t.0)?, t.1))
}

/// An optional operand's CPU storage: Some(None) when absent, None when it
/// lives on another device.
fn cpu_parts(s: Option<&Storage>) -> Option<Option<&CpuStorage>> {
    match s {
        None => Some(None),
        Some(Storage::Cpu(c)) => Some(Some(c)),
        Some(_) => None,
    }
}
