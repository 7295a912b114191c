//! The launch code shared by the two GPU backends. `shaders/<stem>.wgsl`
//! (wgpu) and `kernels/<stem>.cu` (CUDA) implement the same entry points
//! with the same argument block and buffer order, so one `gpu/<stem>.rs`
//! per op family checks the operands, builds the arguments and launches —
//! on wgpu, on CUDA through cudarc, or on the CPU emulation of the CUDA
//! kernels — through the small `GpuBuf` seam.
//!
//! Dtypes on a GPU: f32 (compute), i64 (indices; kernels read the low 32
//! bits, so indices must be below 2^31) and f16 (storage: copies and casts
//! everywhere; matmul and conv2d read and write it with f32 accumulation).

pub mod adam;
pub mod attention;
pub mod batch_norm;
pub mod conv2d;
pub mod copy;
pub mod elementwise;
pub mod index;
pub mod matmul;
pub(crate) mod params;
pub mod pool;
pub mod reduce;
pub mod softmax;

pub(crate) use params::Params;

use crate::{DType, Device, Error, Layout, Result};

/// A buffer on a GPU device, as the launch code needs it.
pub trait GpuBuf: Clone + Sized + std::fmt::Debug {
    fn dtype(&self) -> DType;
    /// Elements.
    fn len(&self) -> usize;
    fn device(&self) -> Device;
    /// Same device object (buffers of different devices never mix).
    fn same_device(&self, op: &'static str, other: &Self) -> Result<()>;
    /// The same underlying buffer (it cannot be read and written by one launch).
    fn same_buffer(&self, other: &Self) -> bool;
    /// An uninitialised buffer of `n` elements on the same device.
    fn alloc_like(&self, op: &'static str, n: usize, dtype: DType) -> Result<Self>;
    /// Zeroes the buffer (0.0 in every float dtype).
    fn clear(&self) -> Result<()>;
    /// Whether the f16-storage kernel variants can run here.
    fn has_f16(&self) -> bool;
    /// The dense buffer's elements as f64 (waits for the device).
    fn read_f64(&self) -> Result<Vec<f64>>;
    /// Launches entry point `entry` of `stem` (its f16 variant when `half`)
    /// over `groups` blocks of `threads` threads. Inputs are bound after the
    /// argument block, read-only, then outputs.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        stem: &'static str,
        entry: &'static str,
        half: bool,
        params: &Params,
        inputs: &[&Self],
        outputs: &[&Self],
        groups: [u32; 3],
        threads: u32,
    ) -> Result<()>;

    fn expect_f32(&self, op: &'static str) -> Result<()> {
        if self.dtype() != DType::F32 {
            return Err(Error::UnsupportedDType { op, dtype: self.dtype(), device: self.device() });
        }
        Ok(())
    }

    fn expect_i64(&self, op: &'static str) -> Result<()> {
        if self.dtype() != DType::I64 {
            return Err(crate::error::arg_err(op, format!("index tensor must be i64, got {:?}", self.dtype())));
        }
        Ok(())
    }

    /// For kernels with an f16-storage variant: true for f16 (where the
    /// device runs it), false for f32, else an error.
    fn half_variant(&self, op: &'static str) -> Result<bool> {
        match self.dtype() {
            DType::F32 => Ok(false),
            DType::F16 if self.has_f16() => Ok(true),
            dtype => Err(Error::UnsupportedDType { op, dtype, device: self.device() }),
        }
    }
}

/// u32 words per element for the word-moving kernels (f32, i64); f16 packs
/// two per word and has its own copy kernels.
pub(crate) fn elem_words(op: &'static str, dtype: DType, device: Device) -> Result<usize> {
    match dtype {
        DType::F32 => Ok(1),
        DType::I64 => Ok(2),
        other => Err(Error::UnsupportedDType { op, dtype: other, device }),
    }
}

/// Words a buffer of `n` elements takes (f16 rounds up to whole words).
pub(crate) fn buffer_words(op: &'static str, n: usize, dtype: DType, device: Device) -> Result<usize> {
    match dtype {
        DType::F16 => Ok(n.div_ceil(2)),
        d => Ok(n * elem_words(op, d, device)?),
    }
}

/// Host values → little-endian bytes of `dtype` (padded to whole words).
pub(crate) fn host_bytes(n: usize, dtype: DType, f: impl Fn(usize) -> f64) -> Vec<u8> {
    let mut bytes: Vec<u8> = match dtype {
        DType::F32 => (0..n).flat_map(|i| (f(i) as f32).to_le_bytes()).collect(),
        DType::F16 => (0..n).flat_map(|i| half::f16::from_f64(f(i)).to_le_bytes()).collect(),
        _ => (0..n).flat_map(|i| (f(i) as i64).to_le_bytes()).collect(),
    };
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

/// Words read back from a dense buffer of `n` elements → f64 values.
pub(crate) fn words_to_f64(w: &[u32], n: usize, dtype: DType) -> Vec<f64> {
    match dtype {
        DType::F32 => w[..n].iter().map(|&b| f32::from_bits(b) as f64).collect(),
        DType::F16 => (0..n).map(|i| half::f16::from_bits((w[i / 2] >> (16 * (i % 2))) as u16).to_f64()).collect(),
        _ => w[..2 * n].chunks_exact(2).map(|p| (p[0] as u64 | (p[1] as u64) << 32) as i64 as f64).collect(),
    }
}

/// Allocation size class of both GPU pools: powers of two up to 64 KiB,
/// then 8 classes per octave (at most 12.5 % waste).
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    if b <= 1 << 16 {
        return b.next_power_of_two();
    }
    let step = b.next_power_of_two() / 16;
    b.div_ceil(step) * step
}

/// Checks a size fits the u32 indexing the kernels use.
pub(crate) fn u32_of(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        crate::error::shape_err(op, format!("size {n} exceeds the GPU kernels' 32-bit indexing (max {})", u32::MAX))
    })
}

/// A dense view of `l`: the same buffer (with its offset) when already
/// contiguous, else a fresh dense copy. Returns (storage, element offset).
pub(crate) fn dense<S: GpuBuf>(s: &S, l: &Layout) -> Result<(S, u32)> {
    if l.is_contiguous() { Ok((s.clone(), u32_of("dense", l.offset())?)) } else { Ok((copy::contiguous(s, l)?, 0)) }
}

/// Block counts for `n` items at `per_group` items each, spread over x and
/// y so no dimension exceeds 65535; kernels rebuild the flat index. Past
/// 65535 the grid overshoots by fewer than y blocks, which kernels skip.
pub(crate) fn groups_for(n: usize, per_group: usize) -> [u32; 3] {
    let g = n.div_ceil(per_group.max(1));
    if g <= 65535 {
        return [g as u32, 1, 1];
    }
    let y = g.div_ceil(65535);
    [g.div_ceil(y) as u32, y as u32, 1]
}

/// The view's elements as f64 (dense copy, then a read).
pub(crate) fn to_f64_vec<S: GpuBuf>(s: &S, l: &Layout) -> Result<Vec<f64>> {
    let d = copy::contiguous(s, l)?;
    let mut v = d.read_f64()?;
    v.truncate(l.numel());
    Ok(v)
}
