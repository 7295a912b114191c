//! The wgpu backend: hand-written WGSL in `shaders/`, one device object per
//! adapter with a pipeline cache and a size-class buffer pool. Every op
//! encodes its dispatch and submits without waiting; only reading data back
//! (`to_vec`, a scalar) waits for the queue. The launch code of every op
//! lives in `backend/gpu/` (shared with CUDA); this module is the buffer
//! and dispatch side of the `GpuBuf` seam.

mod device;

use std::sync::Arc;

pub use device::{WgpuDevice, allow_software_adapters, shader_source, shader_stems, wgpu_device};

use super::gpu::{GpuBuf, Params, buffer_words, host_bytes, words_to_f64};
use crate::{DType, Device, Error, Result};
use device::PooledBuffer;

/// A buffer on a wgpu device; `len` elements of `dtype`.
#[derive(Clone)]
pub struct WgpuStorage {
    buf: Arc<PooledBuffer>,
    dtype: DType,
    len: usize,
    dev: Arc<WgpuDevice>,
}

impl std::fmt::Debug for WgpuStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuStorage({:?} x{} on {})", self.dtype, self.len, self.dev.name())
    }
}

impl WgpuStorage {
    fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }

    fn alloc(dev: &Arc<WgpuDevice>, op: &'static str, n: usize, dtype: DType) -> Result<WgpuStorage> {
        let words = buffer_words(op, n, dtype, Device::Wgpu(dev.ordinal()))?;
        let buf = dev.alloc(op, (words * 4) as u64)?;
        Ok(WgpuStorage { buf: Arc::new(buf), dtype, len: n, dev: dev.clone() })
    }

    pub fn from_f64_fn(dev: &Arc<WgpuDevice>, n: usize, dtype: DType, f: impl Fn(usize) -> f64) -> Result<Self> {
        let s = Self::alloc(dev, "tensor", n, dtype)?;
        dev.write(s.buffer(), &host_bytes(n, dtype, f));
        Ok(s)
    }
}

impl GpuBuf for WgpuStorage {
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn len(&self) -> usize {
        self.len
    }

    fn device(&self) -> Device {
        Device::Wgpu(self.dev.ordinal())
    }

    fn same_device(&self, op: &'static str, other: &Self) -> Result<()> {
        if !Arc::ptr_eq(&self.dev, &other.dev) {
            return Err(Error::DeviceMismatch { op, lhs: self.device(), rhs: other.device() });
        }
        Ok(())
    }

    fn same_buffer(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }

    fn alloc_like(&self, op: &'static str, n: usize, dtype: DType) -> Result<Self> {
        Self::alloc(&self.dev, op, n, dtype)
    }

    fn clear(&self) -> Result<()> {
        self.dev.clear(self.buffer());
        Ok(())
    }

    fn has_f16(&self) -> bool {
        self.dev.has_f16()
    }

    fn read_f64(&self) -> Result<Vec<f64>> {
        let words = buffer_words("to_vec", self.len, self.dtype, self.device())?;
        Ok(words_to_f64(&self.dev.read(self.buffer(), words)?, self.len, self.dtype))
    }

    fn launch(
        &self,
        stem: &'static str,
        entry: &'static str,
        half: bool,
        params: &Params,
        inputs: &[&Self],
        outputs: &[&Self],
        groups: [u32; 3],
        _threads: u32,
    ) -> Result<()> {
        // The workgroup size is fixed in each shader (the same as the CUDA block).
        let ins: Vec<&wgpu::Buffer> = inputs.iter().map(|s| s.buffer()).collect();
        let outs: Vec<&wgpu::Buffer> = outputs.iter().map(|s| s.buffer()).collect();
        self.dev.dispatch(stem, entry, half, params, &ins, &outs, groups)
    }
}
