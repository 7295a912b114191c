//! The CUDA backend: hand-written kernels in `kernels/*.cu`, compiled at run
//! time by NVRTC and launched through cudarc (libcuda and libnvrtc are
//! loaded dynamically, so the workspace builds with no CUDA toolkit). The
//! launch code of every op is shared with wgpu (`backend/gpu/`); this module
//! is the memory and launch side of the `GpuBuf` seam, with two engines:
//!
//! - `Driver`: a real GPU through cudarc (one stream, asynchronous launches,
//!   a size-class caching allocator, modules cached per device and on disk);
//! - `Emulated` (feature `cuda-emulation`, opted into with
//!   `KILN_CUDA_EMULATE=1` or `cuda::use_emulation()`): the same kernel
//!   sources compiled by the C++ compiler against kernels/emu/cuda_emu.h and
//!   run over host memory, so their logic and this launch code are tested
//!   on machines without a GPU.

mod driver;
#[cfg(feature = "cuda-emulation")]
mod emu;
pub mod nvrtc;

#[cfg(feature = "cuda-emulation")]
pub use emu::entries as emulated_entries;

use std::sync::{Arc, Mutex, OnceLock};

use super::gpu::{GpuBuf, Params, buffer_words, host_bytes, words_to_f64};
use crate::{DType, Device, Error, Result};

/// The argument every kernel takes by value (kernels/common.cuh).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KernelArgs {
    pub buf: [u64; 8],
    pub p: [u32; 64],
}

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl cudarc::driver::DeviceRepr for KernelArgs {}

impl KernelArgs {
    fn new(device: Device, params: &Params, bufs: &[u64]) -> Result<KernelArgs> {
        let words = params.words();
        if words.len() > 64 || bufs.len() > 8 {
            return Err(Error::Backend {
                device,
                msg: format!("{} argument words / {} buffers exceed the kernel ABI (64 / 8)", words.len(), bufs.len()),
            });
        }
        let mut a = KernelArgs { buf: [0; 8], p: [0; 64] };
        a.p[..words.len()].copy_from_slice(words);
        a.buf[..bufs.len()].copy_from_slice(bufs);
        Ok(a)
    }
}

enum Engine {
    Driver(Arc<driver::DriverEngine>),
    #[cfg(feature = "cuda-emulation")]
    Emulated,
}

/// One CUDA device (or its CPU emulation).
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    engine: Engine,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}: {})", self.ordinal, self.name)
    }
}

static EMULATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes `Device::Cuda(0)` the CPU emulation of the CUDA kernels (needs the
/// `cuda-emulation` feature), as `KILN_CUDA_EMULATE=1` does. Call before the
/// device's first use. Tests use it; nobody trains on it.
pub fn use_emulation() {
    EMULATE.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn emulate() -> bool {
    EMULATE.load(std::sync::atomic::Ordering::Relaxed) || std::env::var("KILN_CUDA_EMULATE").is_ok_and(|v| v == "1")
}

fn unavailable(ordinal: usize, reason: impl Into<String>) -> Error {
    Error::DeviceUnavailable { device: Device::Cuda(ordinal), reason: reason.into() }
}

/// The device for `Device::Cuda(ordinal)`, opened on first use.
pub fn cuda_device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    static DEVICES: OnceLock<Mutex<std::collections::HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    let mut map = DEVICES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(open(ordinal)?);
    map.insert(ordinal, d.clone());
    Ok(d)
}

fn open(ordinal: usize) -> Result<CudaDevice> {
    if emulate() {
        #[cfg(feature = "cuda-emulation")]
        {
            if ordinal != 0 {
                return Err(unavailable(ordinal, "the CPU emulation has only device 0"));
            }
            return Ok(CudaDevice {
                ordinal,
                name: "CPU emulation of kernels/*.cu (kernels/emu/cuda_emu.h)".into(),
                engine: Engine::Emulated,
            });
        }
        #[cfg(not(feature = "cuda-emulation"))]
        return Err(unavailable(
            ordinal,
            "CUDA emulation asked for, but kiln-tensor was built without `cuda-emulation`",
        ));
    }
    let engine = driver::DriverEngine::open(ordinal).map_err(|e| unavailable(ordinal, e))?;
    Ok(CudaDevice { ordinal, name: engine.name.clone(), engine: Engine::Driver(Arc::new(engine)) })
}

impl CudaDevice {
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_emulated(&self) -> bool {
        !matches!(self.engine, Engine::Driver(_))
    }

    /// Waits for every launch so far (benchmarks; reads wait on their own).
    pub fn synchronize(&self) -> Result<()> {
        match &self.engine {
            Engine::Driver(d) => d.synchronize(),
            #[cfg(feature = "cuda-emulation")]
            Engine::Emulated => Ok(()),
        }
    }

    /// Bytes the caching allocator holds for reuse.
    pub fn cached_bytes(&self) -> u64 {
        match &self.engine {
            Engine::Driver(d) => d.cached_bytes(),
            #[cfg(feature = "cuda-emulation")]
            Engine::Emulated => 0,
        }
    }

    /// Returns every cached block to the driver.
    pub fn release_cached(&self) {
        #[allow(irrefutable_let_patterns)]
        if let Engine::Driver(d) = &self.engine {
            d.release_cached();
        }
    }
}

enum Mem {
    Driver(driver::DriverBuf),
    #[cfg(feature = "cuda-emulation")]
    Host(emu::HostBuf),
}

/// A buffer on a CUDA device; `len` elements of `dtype`.
#[derive(Clone)]
pub struct CudaStorage {
    mem: Arc<Mem>,
    dtype: DType,
    len: usize,
    dev: Arc<CudaDevice>,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage({:?} x{} on {})", self.dtype, self.len, self.dev.name)
    }
}

impl CudaStorage {
    fn alloc(dev: &Arc<CudaDevice>, op: &'static str, n: usize, dtype: DType) -> Result<CudaStorage> {
        let bytes = 4 * buffer_words(op, n, dtype, Device::Cuda(dev.ordinal))?.max(1);
        let mem = match &dev.engine {
            Engine::Driver(d) => Mem::Driver(d.alloc(op, bytes)?),
            #[cfg(feature = "cuda-emulation")]
            Engine::Emulated => Mem::Host(emu::HostBuf::new(bytes)),
        };
        Ok(CudaStorage { mem: Arc::new(mem), dtype, len: n, dev: dev.clone() })
    }

    pub fn from_f64_fn(dev: &Arc<CudaDevice>, n: usize, dtype: DType, f: impl Fn(usize) -> f64) -> Result<Self> {
        let s = Self::alloc(dev, "tensor", n, dtype)?;
        let bytes = host_bytes(n, dtype, f);
        match (&*s.mem, &dev.engine) {
            (Mem::Driver(b), Engine::Driver(d)) => d.write(b, &bytes)?,
            #[cfg(feature = "cuda-emulation")]
            (Mem::Host(b), _) => b.write(&bytes),
            #[allow(unreachable_patterns)]
            _ => unreachable!("a buffer always belongs to its device's engine"),
        }
        Ok(s)
    }

    fn ptr(&self) -> u64 {
        match &*self.mem {
            Mem::Driver(b) => b.ptr(),
            #[cfg(feature = "cuda-emulation")]
            Mem::Host(b) => b.ptr(),
        }
    }
}

/// CUDA entry-point name: the shared entry name plus its dtype variant,
/// unless the name already ends in one (`copy_cast_f32_i64`).
fn kernel_name(entry: &str, half: bool) -> String {
    if ["_f32", "_f16", "_i64"].iter().any(|s| entry.ends_with(s)) {
        entry.to_string()
    } else {
        format!("{entry}_{}", if half { "f16" } else { "f32" })
    }
}

impl GpuBuf for CudaStorage {
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn len(&self) -> usize {
        self.len
    }

    fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal)
    }

    fn same_device(&self, op: &'static str, other: &Self) -> Result<()> {
        if !Arc::ptr_eq(&self.dev, &other.dev) {
            return Err(Error::DeviceMismatch { op, lhs: self.device(), rhs: other.device() });
        }
        Ok(())
    }

    fn same_buffer(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.mem, &other.mem)
    }

    fn alloc_like(&self, op: &'static str, n: usize, dtype: DType) -> Result<Self> {
        Self::alloc(&self.dev, op, n, dtype)
    }

    fn clear(&self) -> Result<()> {
        match (&*self.mem, &self.dev.engine) {
            (Mem::Driver(b), Engine::Driver(d)) => d.clear(b),
            #[cfg(feature = "cuda-emulation")]
            (Mem::Host(b), _) => {
                b.clear();
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("a buffer always belongs to its device's engine"),
        }
    }

    fn has_f16(&self) -> bool {
        true
    }

    fn read_f64(&self) -> Result<Vec<f64>> {
        let words = buffer_words("to_vec", self.len, self.dtype, self.device())?;
        let w = match (&*self.mem, &self.dev.engine) {
            (Mem::Driver(b), Engine::Driver(d)) => d.read(b, words)?,
            #[cfg(feature = "cuda-emulation")]
            (Mem::Host(b), _) => b.read(words),
            #[allow(unreachable_patterns)]
            _ => unreachable!("a buffer always belongs to its device's engine"),
        };
        Ok(words_to_f64(&w, self.len, self.dtype))
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
        threads: u32,
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let ptrs: Vec<u64> = inputs.iter().chain(outputs).map(|s| s.ptr()).collect();
        let args = KernelArgs::new(self.device(), params, &ptrs)?;
        let name = kernel_name(entry, half);
        match &self.dev.engine {
            Engine::Driver(d) => d.launch(stem, &name, &args, groups, threads),
            #[cfg(feature = "cuda-emulation")]
            Engine::Emulated => emu::launch(&name, &args, groups, threads)
                .map_err(|msg| Error::Backend { device: self.device(), msg: format!("{stem}::{name}: {msg}") }),
        }
    }
}
