/// Where a tensor lives. Model code takes a `Device` and never names a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    /// CUDA device ordinal (backend: kernels/*.cu compiled by NVRTC; with
    /// KILN_CUDA_EMULATE=1 and the `cuda-emulation` feature, device 0 is the
    /// CPU emulation of those kernels).
    Cuda(usize),
    /// wgpu adapter ordinal (backend: shaders/*.wgsl). Hardware adapters
    /// first; software ones only with KILN_WGPU_ALLOW_SOFTWARE=1.
    Wgpu(usize),
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}
