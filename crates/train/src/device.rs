//! `--device`: the names users type, resolved to a `Device` that works.

use kiln_tensor::Device;

use crate::Result;

/// `auto` takes a CUDA GPU, else a hardware wgpu adapter, else the CPU;
/// `wgpu` (or `wgpu:N`) insists on one (a software adapter only with
/// KILN_WGPU_ALLOW_SOFTWARE=1).
pub fn resolve_device(name: &str) -> Result<Device> {
    let wgpu = |n: usize| -> Result<Device> {
        kiln_tensor::gpu::wgpu_device(n).map_err(|e| format!("--device {name}: {e}"))?;
        Ok(Device::Wgpu(n))
    };
    let cuda = |n: usize| -> Result<Device> {
        kiln_tensor::cuda::cuda_device(n).map_err(|e| format!("--device {name}: {e}"))?;
        Ok(Device::Cuda(n))
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => match (kiln_tensor::cuda::cuda_device(0), kiln_tensor::gpu::wgpu_device(0)) {
            (Ok(d), _) if !d.is_emulated() => Ok(Device::Cuda(0)),
            (_, Ok(d)) if !d.is_software() => Ok(Device::Wgpu(0)),
            _ => Ok(Device::Cpu),
        },
        "wgpu" => wgpu(0),
        "cuda" => cuda(0),
        other => {
            if let Some(n) = other.strip_prefix("wgpu:").and_then(|n| n.parse().ok()) {
                wgpu(n)
            } else if let Some(n) = other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                cuda(n)
            } else {
                Err(format!("--device {other}: expected auto, cpu, cuda, cuda:N, wgpu or wgpu:N").into())
            }
        }
    }
}

/// What a user should read about the device in use, e.g. "wgpu:0 (llvmpipe ...)".
pub fn describe(device: Device) -> String {
    match device {
        // The CPU backend runs on rayon's global pool.
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Wgpu(n) => match kiln_tensor::gpu::wgpu_device(n) {
            Ok(d) => format!("wgpu:{n} ({})", d.name()),
            Err(_) => format!("wgpu:{n}"),
        },
        Device::Cuda(n) => match kiln_tensor::cuda::cuda_device(n) {
            Ok(d) if d.is_emulated() => format!("cuda:{n} (CPU emulation)"),
            _ => format!("cuda:{n}"),
        },
    }
}
