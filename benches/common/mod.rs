//! Shared by the criterion benches: the shapes the models use, random
//! inputs, timing groups that report FLOP/s, and the accuracy check of each
//! f32 kernel against the same op run in f64 (printed beside the speed).
//!
//! criterion prints throughput as "elem/s"; every bench sets one element =
//! one floating-point operation, so "Gelem/s" reads as GFLOP/s.

#![allow(dead_code)]

use criterion::{BenchmarkId, Criterion, Throughput};
use kiln::tensor::Rng;
use kiln::{DType, Device, Tensor};

pub fn randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, dtype, Device::Cpu, &mut Rng::new(seed)).unwrap()
}

/// Short runs: the shared 2-core machines drift, so ratios measured in one
/// run matter more than many samples.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3))
}

/// Times `f` as `group/cpu/variant/shape`, `flops` per call.
pub fn bench<F: FnMut()>(c: &mut Criterion, group: &str, variant: &str, shape: &str, flops: f64, mut f: F) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(BenchmarkId::new(format!("cpu/{variant}"), shape), |b| b.iter(&mut f));
    g.finish();
}

/// The wgpu device the benches time, if any. Software adapters count only
/// with KILN_WGPU_ALLOW_SOFTWARE=1 (then the timings prove the path runs,
/// nothing more); without an adapter the wgpu benches print a skip line.
pub fn wgpu() -> Option<Device> {
    match kiln::tensor::gpu::wgpu_device(0) {
        Ok(d) => {
            println!(
                "wgpu adapter: {d:?}{}",
                if d.is_software() { " (software: not a speed measurement)" } else { "" }
            );
            Some(Device::Wgpu(0))
        }
        Err(e) => {
            println!("SKIP wgpu benches: {e}");
            None
        }
    }
}

/// Times `f` as `group/wgpu/variant/shape`; each call waits for the queue,
/// so the time is the GPU's, not the submission's.
pub fn bench_wgpu<F: FnMut()>(c: &mut Criterion, group: &str, variant: &str, shape: &str, flops: f64, mut f: F) {
    let dev = kiln::tensor::gpu::wgpu_device(0).expect("wgpu() checked the device");
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(BenchmarkId::new(format!("wgpu/{variant}"), shape), |b| {
        b.iter(|| {
            f();
            dev.synchronize().expect("wgpu queue");
        })
    });
    g.finish();
}

/// Max |wgpu f32 − CPU f64| / max |f64| of an op (the f64 CPU path is the oracle).
pub fn report_wgpu_error(id: &str, dev: Device, op: impl Fn(Device, DType) -> Vec<f64>) {
    let (lo, hi) = (op(dev, DType::F32), op(Device::Cpu, DType::F64));
    let scale = hi.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = lo.iter().zip(&hi).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("accuracy {id} (wgpu): max |f32 - f64| / max |f64| = {:.2e}", err / scale);
}

/// Max |f32 − f64| / max |f64| of an op run at both precisions on the same
/// values (the f64 CPU path is the oracle). Printed next to the timings.
pub fn report_error(id: &str, op: impl Fn(DType) -> Vec<f64>) {
    let (lo, hi) = (op(DType::F32), op(DType::F64));
    let scale = hi.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = lo.iter().zip(&hi).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("accuracy {id}: max |f32 - f64| / max |f64| = {:.2e}", err / scale);
}
