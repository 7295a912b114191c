//! The cudarc engine: one context and stream per device, modules compiled
//! by NVRTC on first use (see nvrtc.rs), a size-class caching allocator.
//! Launches are asynchronous on the one stream; reads synchronise.
//! Nothing here runs without a GPU: `cargo xtask gpu-check` on a GPU
//! machine runs the CUDA parity tests through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig};
use cudarc::driver::{PushKernelArg, result};

use super::KernelArgs;
use crate::{Device, Error, Result};

pub(crate) struct DriverEngine {
    pub name: String,
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: (i32, i32),
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    pool: Mutex<HashMap<usize, Vec<CudaSlice<u8>>>>,
}

/// A device allocation; dropping it hands the block back to the pool.
pub(crate) struct DriverBuf {
    slice: Option<CudaSlice<u8>>,
    ptr: u64,
    class: usize,
    engine: Arc<DriverEngine>,
}

impl DriverBuf {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for DriverBuf {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            self.engine.pool.lock().unwrap_or_else(|e| e.into_inner()).entry(self.class).or_default().push(s);
        }
    }
}

impl DriverEngine {
    pub fn open(ordinal: usize) -> std::result::Result<DriverEngine, String> {
        // cudarc panics when libcuda cannot be loaded: check first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("CUDA driver (libcuda.so) not found".into());
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| format!("CUDA context for device {ordinal}: {e:?}"))?;
        // One stream orders every launch and copy, so cudarc's per-buffer
        // events are not needed (and pooled blocks are reused in stream order).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let arch = ctx.compute_capability().map_err(|e| format!("{e:?}"))?;
        let name = format!("{} (sm_{}{})", ctx.name().map_err(|e| format!("{e:?}"))?, arch.0, arch.1);
        Ok(DriverEngine {
            name,
            ordinal,
            ctx,
            stream,
            arch,
            modules: Default::default(),
            functions: Default::default(),
            pool: Default::default(),
        })
    }

    fn err(&self, what: &str, e: impl std::fmt::Debug) -> Error {
        Error::Backend { device: Device::Cuda(self.ordinal), msg: format!("{what}: {e:?}") }
    }

    fn function(&self, stem: &'static str, name: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match modules.get(stem) {
                Some(m) => m.clone(),
                None => {
                    let ptx = super::nvrtc::compile(stem, self.arch, Device::Cuda(self.ordinal))?;
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                        .map_err(|e| self.err(&format!("loading kernels/{stem}.cu"), e))?;
                    modules.insert(stem, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(name).map_err(|e| self.err(&format!("kernel {name} in kernels/{stem}.cu"), e))?;
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), f.clone());
        Ok(f)
    }

    pub fn launch(
        &self,
        stem: &'static str,
        name: &str,
        args: &KernelArgs,
        groups: [u32; 3],
        threads: u32,
    ) -> Result<()> {
        let f = self.function(stem, name)?;
        let cfg = LaunchConfig {
            grid_dim: (groups[0], groups[1], groups[2]),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(&f);
        b.arg(args);
        // SAFETY: the argument block matches `KernelArgs` in kernels/common.cuh;
        // every buffer it points to is alive (held by the caller's tensors) and
        // sized by the launch code for this kernel.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| self.err(&format!("launch of {stem}::{name}"), e))
    }

    pub fn alloc(self: &Arc<Self>, op: &'static str, bytes: usize) -> Result<DriverBuf> {
        let class = crate::backend::gpu::size_class(bytes as u64) as usize;
        let reused = self.pool.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&class).and_then(Vec::pop);
        let slice = match reused {
            Some(s) => s,
            // SAFETY: uninitialised device memory; every kernel writes its whole output.
            None => unsafe { self.stream.alloc::<u8>(class) }
                .map_err(|e| self.err(&format!("{op}: allocating {class} bytes"), e))?,
        };
        let (ptr, _) = slice.device_ptr(&self.stream);
        Ok(DriverBuf { ptr, slice: Some(slice), class, engine: self.clone() })
    }

    /// The raw driver calls below act on the calling thread's current
    /// context (cudarc's safe calls bind it themselves).
    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| self.err("binding the CUDA context", e))
    }

    pub fn write(&self, b: &DriverBuf, bytes: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: `b` holds at least `bytes.len()` bytes (sized by the caller);
        // a pageable source is staged before the call returns.
        unsafe { result::memcpy_htod_async(b.ptr, bytes, self.stream.cu_stream()) }.map_err(|e| self.err("upload", e))
    }

    pub fn clear(&self, b: &DriverBuf) -> Result<()> {
        self.bind()?;
        let len = b.slice.as_ref().map_or(0, |s| s.len());
        unsafe { result::memset_d8_async(b.ptr, 0, len, self.stream.cu_stream()) }.map_err(|e| self.err("clear", e))
    }

    pub fn read(&self, b: &DriverBuf, words: usize) -> Result<Vec<u32>> {
        self.bind()?;
        let mut out = vec![0u32; words];
        unsafe { result::memcpy_dtoh_async(&mut out, b.ptr, self.stream.cu_stream()) }
            .map_err(|e| self.err("readback", e))?;
        self.synchronize()?;
        Ok(out)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| self.err("synchronize", e))
    }

    pub fn cached_bytes(&self) -> u64 {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.iter().map(|(c, v)| (c * v.len()) as u64).sum()
    }

    pub fn release_cached(&self) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
