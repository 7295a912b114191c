//! kiln-tensor: n-d tensors with strided views, define-by-run reverse-mode
//! autograd (differentiable twice), and kernels on three backends behind one
//! `Storage` seam: CPU (rayon, our AVX-512 SGEMM or matrixmultiply), wgpu
//! (WGSL) and CUDA (NVRTC).
//!
//! ```
//! use kiln_tensor::{DType, Device, Tensor, Var};
//! let x = Var::new(&Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu)?)?;
//! let y = x.sqr()?.sum_all()?;
//! let g = y.backward()?;
//! assert_eq!(g.get(&x).unwrap().to_vec::<f64>()?, vec![2.0, 4.0, 6.0]);
//! # Ok::<(), kiln_tensor::Error>(())
//! ```

pub mod autograd;
pub(crate) mod backend;
pub mod device;
pub mod dtype;
pub mod error;
/// The CUDA backend's device handle, NVRTC compilation of kernels/*.cu and
/// the switch to the CPU emulation of the kernels.
pub mod cuda {
    /// Entry points of the CPU-emulated build (feature `cuda-emulation`).
    #[cfg(feature = "cuda-emulation")]
    pub use crate::backend::cuda::emulated_entries;
    pub use crate::backend::cuda::nvrtc::{
        compile, compile_source, kernel_source, kernel_stems, nvrtc_available, nvrtc_version,
    };
    pub use crate::backend::cuda::{CudaDevice, cuda_device, use_emulation};
}
/// The CPU backend's GEMM choice.
pub mod cpu {
    /// The f32 GEMM this process uses: `"avx512_8x48"` (kiln's packed
    /// AVX-512 kernel) or `"matrixmultiply"` (other CPUs, or
    /// `KILN_CPU_GEMM=matrixmultiply` to compare). f64 always uses matrixmultiply.
    pub fn sgemm_name() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::sgemm::available() {
            return "avx512_8x48";
        }
        "matrixmultiply"
    }

    /// The f32 GEMM's micro-kernel alone on cache-resident panels, `reps`
    /// passes of a `kc`-deep A panel over `panels` B panels (1: B in L1;
    /// 10: B in L2, as in a large GEMM): its FLOPs, or `None` where
    /// `sgemm_name()` is not `"avx512_8x48"`. `benches/matmul.rs` times it
    /// on every thread to show the kernel's ceiling beside the GEMMs.
    pub fn sgemm_kernel_sweep(kc: usize, panels: usize, reps: usize) -> Option<f64> {
        #[cfg(target_arch = "x86_64")]
        return crate::backend::cpu::sgemm::kernel_sweep(kc, panels, reps);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (kc, panels, reps);
            None
        }
    }
}
/// The wgpu backend's device handle (adapter info, pooled memory) and shader sources.
pub mod gpu {
    pub use crate::backend::wgpu::{WgpuDevice, allow_software_adapters, shader_source, shader_stems, wgpu_device};
}
pub mod layout;
/// Host f64 LU, inverse, slogdet and random rotations (the kernels of `Tensor::inverse` / `slogdet`).
pub use backend::cpu::linalg;
pub(crate) mod op;
pub mod ops;
pub mod rng;
pub mod tensor;
pub mod testing;

pub use autograd::{GradOptions, Grads, grad, is_grad_enabled, no_grad};
pub(crate) use backend::Storage;
pub use device::Device;
pub use dtype::{DType, Float, WithDType};
pub use error::{Error, Result};
pub use layout::Layout;
pub use ops::conv2d::{Conv2dParams, ConvTranspose2dParams};
pub use ops::elementwise::{BinaryOp, UnaryOp};
pub use ops::loss::{self, Reduction};
pub use ops::pool::{InterpolateTo, NearestMode, Pool2dParams};
pub use rng::Rng;
pub use tensor::{Tensor, TensorId, Var};
