//! One `WgpuDevice` per adapter ordinal: the wgpu device and queue, a
//! pipeline cache (one pipeline per shader entry point, created on first
//! use), and a buffer pool with size classes so training steps reuse memory
//! instead of allocating per op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::Params;
use crate::{Device, Error, Result};

/// The WGSL sources, by stem; each is compiled with `common.wgsl` in front.
pub(crate) const SHADERS: &[(&str, &str)] = &[
    ("adam", include_str!("../../../../../shaders/adam.wgsl")),
    ("attention", include_str!("../../../../../shaders/attention.wgsl")),
    ("batch_norm", include_str!("../../../../../shaders/batch_norm.wgsl")),
    ("conv2d", include_str!("../../../../../shaders/conv2d.wgsl")),
    ("copy", include_str!("../../../../../shaders/copy.wgsl")),
    ("elementwise", include_str!("../../../../../shaders/elementwise.wgsl")),
    ("index", include_str!("../../../../../shaders/index.wgsl")),
    ("matmul", include_str!("../../../../../shaders/matmul.wgsl")),
    ("pool", include_str!("../../../../../shaders/pool.wgsl")),
    ("reduce", include_str!("../../../../../shaders/reduce.wgsl")),
    ("softmax", include_str!("../../../../../shaders/softmax.wgsl")),
];
pub(crate) const COMMON: &str = include_str!("../../../../../shaders/common.wgsl");

/// Every shader stem (`shaders/<stem>.wgsl`), from the table above.
pub fn shader_stems() -> impl Iterator<Item = &'static str> {
    SHADERS.iter().map(|(stem, _)| *stem)
}

/// The full source of one stem's module: the storage element type `elem`
/// (f32, or f16 with `half`), the common prelude, then the stem. Shaders
/// that support f16 storage declare their tensors `array<elem>` and
/// accumulate in f32.
pub fn shader_source(stem: &str, half: bool) -> Option<String> {
    let elem = if half { "enable f16;\nalias elem = f16;" } else { "alias elem = f32;" };
    SHADERS.iter().find(|(s, _)| *s == stem).map(|(_, src)| format!("{elem}\n{COMMON}\n{src}"))
}

/// (stem, entry point, f16 storage).
type PipelineKey = (&'static str, &'static str, bool);

/// A bind-group layout and the pipeline layout built from it.
type Layouts = (Arc<wgpu::BindGroupLayout>, Arc<wgpu::PipelineLayout>);

pub struct WgpuDevice {
    ordinal: usize,
    info: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<(usize, usize), Layouts>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl std::fmt::Debug for WgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WgpuDevice({}: {} [{:?}, {:?}])",
            self.ordinal, self.info.name, self.info.backend, self.info.device_type
        )
    }
}

/// The device for `Device::Wgpu(ordinal)`, created on first use.
///
/// Hardware adapters are preferred; a software one (lavapipe, llvmpipe) is
/// used only when `KILN_WGPU_ALLOW_SOFTWARE=1`, so nobody benchmarks a CPU
/// rasteriser by accident.
pub fn wgpu_device(ordinal: usize) -> Result<Arc<WgpuDevice>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<WgpuDevice>>>> = OnceLock::new();
    let map = DEVICES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(WgpuDevice::open(ordinal)?);
    map.insert(ordinal, d.clone());
    Ok(d)
}

fn unavailable(ordinal: usize, reason: impl Into<String>) -> Error {
    Error::DeviceUnavailable { device: Device::Wgpu(ordinal), reason: reason.into() }
}

static SOFTWARE_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets `Device::Wgpu(n)` count software adapters (lavapipe, llvmpipe) too,
/// as `KILN_WGPU_ALLOW_SOFTWARE=1` does. Call before the device's first use.
pub fn allow_software_adapters() {
    SOFTWARE_OK.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn allow_software() -> bool {
    SOFTWARE_OK.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var("KILN_WGPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1")
}

impl WgpuDevice {
    fn open(ordinal: usize) -> Result<WgpuDevice> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let mut adapters: Vec<wgpu::Adapter> = all
            .into_iter()
            .filter(|a| a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS))
            .collect();
        // Hardware first, then software; Vulkan/Metal/DX12 before GL.
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (i.device_type == wgpu::DeviceType::Cpu, i.backend == wgpu::Backend::Gl)
        });
        let software: Vec<String> = adapters
            .iter()
            .filter(|a| a.get_info().device_type == wgpu::DeviceType::Cpu)
            .map(|a| a.get_info().name)
            .collect();
        if !allow_software() {
            adapters.retain(|a| a.get_info().device_type != wgpu::DeviceType::Cpu);
        }
        let Some(adapter) = adapters.into_iter().nth(ordinal) else {
            let hint = if software.is_empty() || allow_software() {
                String::new()
            } else {
                format!(" (software adapters {software:?} are skipped; set KILN_WGPU_ALLOW_SOFTWARE=1 to use them)")
            };
            return Err(unavailable(ordinal, format!("no wgpu adapter with ordinal {ordinal}{hint}")));
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: adapter.features() & wgpu::Features::SHADER_F16,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| unavailable(ordinal, format!("request_device on {}: {e}", info.name)))?;
        Ok(WgpuDevice {
            ordinal,
            info,
            device,
            queue,
            pipelines: Default::default(),
            layouts: Default::default(),
            pool: Default::default(),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// A CPU rasteriser (lavapipe, llvmpipe, WARP): fine for tests, never for speed.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    fn backend_err(&self, what: &str, msg: impl std::fmt::Display) -> Error {
        Error::Backend { device: Device::Wgpu(self.ordinal), msg: format!("{what}: {msg}") }
    }

    // ---- memory -------------------------------------------------------

    pub(crate) fn alloc(self: &Arc<Self>, op: &'static str, bytes: u64) -> Result<PooledBuffer> {
        let class = crate::backend::gpu::size_class(bytes);
        if class > self.device.limits().max_storage_buffer_binding_size {
            return Err(crate::error::shape_err(
                op,
                format!(
                    "{bytes} bytes exceed the adapter's largest storage binding ({} bytes)",
                    self.device.limits().max_storage_buffer_binding_size
                ),
            ));
        }
        let reused = self.pool.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&class).and_then(Vec::pop);
        let buffer = match reused {
            Some(b) => b,
            None => {
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(op),
                    size: class,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(self.backend_err(&format!("{op}: allocating {class} bytes"), e));
                }
                b
            }
        };
        Ok(PooledBuffer { buffer: Some(buffer), class, dev: self.clone() })
    }

    /// Waits until every submitted dispatch has finished (benchmarks; data
    /// reads wait on their own).
    pub fn synchronize(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| self.backend_err("synchronize", e))
    }

    /// Bytes held in the pool (freed tensors waiting for reuse).
    pub fn cached_bytes(&self) -> u64 {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.iter().map(|(c, v)| c * v.len() as u64).sum()
    }

    /// Frees every pooled buffer back to the driver.
    pub fn release_cached(&self) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn write(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.queue.write_buffer(buf, 0, bytes);
        }
    }

    pub(crate) fn clear(&self, buf: &wgpu::Buffer) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.clear_buffer(buf, 0, None);
        self.queue.submit([enc.finish()]);
    }

    /// Reads the first `words` u32 words of `buf`; waits for the queue.
    pub(crate) fn read(&self, buf: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
        if words == 0 {
            return Ok(vec![]);
        }
        let bytes = (words * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| self.backend_err("readback", e))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.backend_err("readback", e)),
            Err(_) => return Err(self.backend_err("readback", "the map callback never ran")),
        }
        let view = slice.get_mapped_range().map_err(|e| self.backend_err("readback", e))?;
        let out = bytemuck::cast_slice::<u8, u32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    // ---- pipelines and dispatch ----------------------------------------

    /// Binding 0 is the params array; then `n_in` read-only and `n_out`
    /// read-write storage buffers, in that order (every shader follows this).
    fn layout(&self, n_in: usize, n_out: usize) -> Layouts {
        let mut layouts = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        layouts
            .entry((n_in, n_out))
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..1 + n_in + n_out)
                    .map(|i| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: i <= n_in },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("kiln"),
                    entries: &entries,
                });
                let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("kiln"),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (Arc::new(bgl), Arc::new(pl))
            })
            .clone()
    }

    fn pipeline(
        &self,
        stem: &'static str,
        entry: &'static str,
        half: bool,
        layout: &wgpu::PipelineLayout,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).get(&(stem, entry, half)) {
            return Ok(p.clone());
        }
        let src =
            shader_source(stem, half).ok_or_else(|| self.backend_err(entry, format!("no shader named {stem}")))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(stem),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            let variant = if half { " (f16)" } else { "" };
            return Err(self.backend_err(&format!("shaders/{stem}.wgsl, entry point {entry}{variant}"), e));
        }
        let p = Arc::new(pipeline);
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).insert((stem, entry, half), p.clone());
        Ok(p)
    }

    /// Whether the adapter can run the f16-storage variants.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Encodes one dispatch of `stem::entry` (its f16-storage variant when
    /// `half`) and submits it without waiting.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch(
        &self,
        stem: &'static str,
        entry: &'static str,
        half: bool,
        params: &Params,
        inputs: &[&wgpu::Buffer],
        outputs: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let bindings = 1 + inputs.len() + outputs.len();
        if bindings as u32 > self.device.limits().max_storage_buffers_per_shader_stage {
            let limit = self.device.limits().max_storage_buffers_per_shader_stage;
            return Err(
                self.backend_err(entry, format!("needs {bindings} storage buffers; the adapter allows {limit}"))
            );
        }
        let (bgl, pl) = self.layout(inputs.len(), outputs.len());
        let pipeline = self.pipeline(stem, entry, half, &pl)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pbuf = wgpu::util::DeviceExt::create_buffer_init(
            &self.device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: params.bytes(),
                usage: wgpu::BufferUsages::STORAGE,
            },
        );
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: pbuf.as_entire_binding() }];
        for (i, b) in inputs.iter().chain(outputs).enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &bgl,
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(self.backend_err(&format!("dispatch of {stem}::{entry}"), e));
        }
        Ok(())
    }
}

/// A pool buffer; dropping it hands the buffer back to its size class.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    dev: Arc<WgpuDevice>,
}

impl PooledBuffer {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.dev.pool.lock().unwrap_or_else(|e| e.into_inner()).entry(self.class).or_default().push(b);
        }
    }
}
