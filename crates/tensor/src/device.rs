/// Where a tensor lives. Model code takes a `Device` and never names a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    /// CUDA device ordinal (backend: kernels/*.cu through NVRTC; not yet built).
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

/// The error for a backend this build cannot run yet.
pub(crate) fn unavailable(device: Device) -> crate::Error {
    crate::Error::DeviceUnavailable { device, reason: "this backend is not implemented yet; use Device::Cpu".into() }
}
