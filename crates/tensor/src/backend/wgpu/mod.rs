//! The wgpu backend: hand-written WGSL in `shaders/`, one device object per
//! adapter with a pipeline cache and a size-class buffer pool. Every op
//! encodes its dispatches and submits without waiting; only reading data back
//! (`to_vec`, a scalar) waits for the queue.
//!
//! Dtypes on the device: f32 (compute), i64 (indices; stored as two u32
//! words, kernels read the low word, so indices must be below 2^31) and f16
//! (storage: copies and casts everywhere; matmul and conv2d read and write it
//! with f32 accumulation on adapters with SHADER_F16).

pub mod adam;
pub mod attention;
pub mod batch_norm;
pub mod conv2d;
pub mod copy;
mod device;
pub mod elementwise;
pub mod index;
pub mod matmul;
mod params;
pub mod pool;
pub mod reduce;
pub mod softmax;

use std::sync::Arc;

pub use device::{SHADER_STEMS, WgpuDevice, allow_software_adapters, shader_source, wgpu_device};
pub(crate) use params::Params;

use crate::{DType, Device, Error, Layout, Result};
use device::PooledBuffer;

/// A buffer on a wgpu device; `len` elements of `dtype`.
#[derive(Clone)]
pub struct WgpuStorage {
    pub(crate) buf: Arc<PooledBuffer>,
    pub(crate) dtype: DType,
    pub(crate) len: usize,
    pub(crate) dev: Arc<WgpuDevice>,
}

impl std::fmt::Debug for WgpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuStorage({:?} x{} on {})", self.dtype, self.len, self.dev.name())
    }
}

/// u32 words per element for the word-moving kernels (f32, i64); f16 packs
/// two per word and has its own copy kernels.
fn elem_words(op: &'static str, dtype: DType, device: Device) -> Result<usize> {
    match dtype {
        DType::F32 => Ok(1),
        DType::I64 => Ok(2),
        other => Err(Error::UnsupportedDType { op, dtype: other, device }),
    }
}

/// Words a buffer of `n` elements takes (f16 rounds up to whole words).
fn buffer_words(op: &'static str, n: usize, dtype: DType, device: Device) -> Result<usize> {
    match dtype {
        DType::F16 => Ok(n.div_ceil(2)),
        d => Ok(n * elem_words(op, d, device)?),
    }
}

impl WgpuStorage {
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> Device {
        Device::Wgpu(self.dev.ordinal())
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }

    /// An uninitialised buffer for `n` elements (kernels write every element).
    pub(crate) fn alloc(dev: &Arc<WgpuDevice>, op: &'static str, n: usize, dtype: DType) -> Result<WgpuStorage> {
        let words = buffer_words(op, n, dtype, Device::Wgpu(dev.ordinal()))?;
        let buf = dev.alloc(op, (words * 4) as u64)?;
        Ok(WgpuStorage { buf: Arc::new(buf), dtype, len: n, dev: dev.clone() })
    }

    pub(crate) fn alloc_like(&self, op: &'static str, n: usize, dtype: DType) -> Result<WgpuStorage> {
        Self::alloc(&self.dev, op, n, dtype)
    }

    pub fn from_f64_fn(dev: &Arc<WgpuDevice>, n: usize, dtype: DType, f: impl Fn(usize) -> f64) -> Result<Self> {
        let s = Self::alloc(dev, "tensor", n, dtype)?;
        let mut bytes: Vec<u8> = match dtype {
            DType::F32 => (0..n).flat_map(|i| (f(i) as f32).to_le_bytes()).collect(),
            DType::F16 => (0..n).flat_map(|i| half::f16::from_f64(f(i)).to_le_bytes()).collect(),
            _ => (0..n).flat_map(|i| (f(i) as i64).to_le_bytes()).collect(),
        };
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        dev.write(s.buffer(), &bytes);
        Ok(s)
    }

    /// All bytes of the buffer (waits for the queue).
    fn read_words(&self) -> Result<Vec<u32>> {
        let words = buffer_words("to_vec", self.len, self.dtype, self.device())?;
        self.dev.read(self.buffer(), words)
    }

    pub fn to_f64_vec(&self, l: &Layout) -> Result<Vec<f64>> {
        let dense = copy::contiguous(self, l)?;
        let w = dense.read_words()?;
        Ok(match self.dtype {
            DType::F32 => w.iter().map(|&b| f32::from_bits(b) as f64).collect(),
            DType::F16 => {
                (0..l.numel()).map(|i| half::f16::from_bits((w[i / 2] >> (16 * (i % 2))) as u16).to_f64()).collect()
            }
            _ => w.chunks_exact(2).map(|p| (p[0] as u64 | (p[1] as u64) << 32) as i64 as f64).collect(),
        })
    }

    pub(crate) fn same_device(&self, op: &'static str, other: &WgpuStorage) -> Result<()> {
        if !Arc::ptr_eq(&self.dev, &other.dev) {
            return Err(Error::DeviceMismatch { op, lhs: self.device(), rhs: other.device() });
        }
        Ok(())
    }

    /// f32 only: the compute dtype of every kernel here.
    pub(crate) fn expect_f32(&self, op: &'static str) -> Result<()> {
        if self.dtype != DType::F32 {
            return Err(Error::UnsupportedDType { op, dtype: self.dtype, device: self.device() });
        }
        Ok(())
    }

    /// For kernels with an f16-storage variant: true for f16 (when the
    /// adapter has SHADER_F16), false for f32, else an error.
    pub(crate) fn half_variant(&self, op: &'static str) -> Result<bool> {
        match self.dtype {
            DType::F32 => Ok(false),
            DType::F16 if self.dev.has_f16() => Ok(true),
            dtype => Err(Error::UnsupportedDType { op, dtype, device: self.device() }),
        }
    }

    pub(crate) fn expect_i64(&self, op: &'static str) -> Result<()> {
        if self.dtype != DType::I64 {
            return Err(crate::error::arg_err(op, format!("index tensor must be i64, got {:?}", self.dtype)));
        }
        Ok(())
    }
}

/// Checks a size fits the u32 indexing the shaders use.
pub(crate) fn u32_of(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        crate::error::shape_err(op, format!("size {n} exceeds the wgpu backend's 32-bit indexing (max {})", u32::MAX))
    })
}

/// A dense f32 view of `l`: the same buffer (with its offset) when already
/// contiguous, else a fresh dense copy. Returns (storage, element offset).
pub(crate) fn dense(s: &WgpuStorage, l: &Layout) -> Result<(WgpuStorage, u32)> {
    if l.is_contiguous() { Ok((s.clone(), u32_of("dense", l.offset())?)) } else { Ok((copy::contiguous(s, l)?, 0)) }
}

/// Workgroup counts for `n` items at `per_group` items each, spread over x
/// and y so no dimension exceeds the 65535 limit; shaders rebuild the flat id.
pub(crate) fn groups_for(n: usize, per_group: usize) -> [u32; 3] {
    let g = n.div_ceil(per_group.max(1));
    if g <= 65535 { [g as u32, 1, 1] } else { [65535, g.div_ceil(65535) as u32, 1] }
}
