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

/// The GPU devices the benches time: a real CUDA GPU, and a wgpu adapter
/// (software ones only with KILN_WGPU_ALLOW_SOFTWARE=1, and then the
/// timings only prove the path runs). Absent devices print a skip line.
pub fn gpus() -> Vec<Device> {
    let mut out = vec![];
    match kiln::tensor::cuda::cuda_device(0) {
        Ok(d) if !d.is_emulated() => {
            println!("cuda device: {d:?}");
            out.push(Device::Cuda(0));
        }
        Ok(_) => println!("SKIP cuda benches: the CPU emulation is not a speed measurement"),
        Err(e) => println!("SKIP cuda benches: {e}"),
    }
    match kiln::tensor::gpu::wgpu_device(0) {
        Ok(d) => {
            println!(
                "wgpu adapter: {d:?}{}",
                if d.is_software() { " (software: not a speed measurement)" } else { "" }
            );
            out.push(Device::Wgpu(0));
        }
        Err(e) => println!("SKIP wgpu benches: {e}"),
    }
    out
}

fn synchronize(dev: Device) {
    match dev {
        Device::Cuda(n) => kiln::tensor::cuda::cuda_device(n).and_then(|d| d.synchronize()),
        Device::Wgpu(n) => kiln::tensor::gpu::wgpu_device(n).and_then(|d| d.synchronize()),
        Device::Cpu => Ok(()),
    }
    .expect("device synchronize")
}

/// Runs `f` on a worker of a rayon pool, as `kiln-train` runs every
/// command: a model step's many small parallel ops then split work with the
/// other workers instead of waking them and sleeping (27% of a Glow step
/// when called from outside the pool). Model-step benches time this way.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().build().expect("a rayon pool")).install(f)
}

/// The id segment of a device's benches.
pub fn backend(dev: Device) -> &'static str {
    match dev {
        Device::Cuda(_) => "cuda",
        Device::Wgpu(_) => "wgpu",
        Device::Cpu => "cpu",
    }
}

/// Times `f` as `group/<cuda|wgpu>/variant/shape`; each call waits for the
/// device, so the time is the GPU's, not the submission's.
pub fn bench_gpu<F: FnMut()>(
    c: &mut Criterion,
    dev: Device,
    group: &str,
    variant: &str,
    shape: &str,
    flops: f64,
    mut f: F,
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function(BenchmarkId::new(format!("{}/{variant}", backend(dev)), shape), |b| {
        b.iter(|| {
            f();
            synchronize(dev);
        })
    });
    g.finish();
}

/// Max |GPU f32 − CPU f64| / max |f64| of an op (the f64 CPU path is the oracle).
pub fn report_gpu_error(id: &str, dev: Device, op: impl Fn(Device, DType) -> Vec<f64>) {
    let (lo, hi) = (op(dev, DType::F32), op(Device::Cpu, DType::F64));
    let scale = hi.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = lo.iter().zip(&hi).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("accuracy {id} ({}): max |f32 - f64| / max |f64| = {:.2e}", backend(dev), err / scale);
}

/// Max |f32 − f64| / max |f64| of an op run at both precisions on the same
/// values (the f64 CPU path is the oracle). Printed next to the timings.
pub fn report_error(id: &str, op: impl Fn(DType) -> Vec<f64>) {
    let (lo, hi) = (op(DType::F32), op(DType::F64));
    let scale = hi.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = lo.iter().zip(&hi).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("accuracy {id}: max |f32 - f64| / max |f64| = {:.2e}", err / scale);
}

/// A flow's training step at batch 64 on 8-bit 28×28 digits and 64 samples
/// at T = 0.7, as `group/<backend>/{default,sample}/n64_s28`, on every device.
pub fn flow_step(c: &mut Criterion, group: &str, build: impl Fn(Device) -> kiln::flow::Flow) {
    for dev in std::iter::once(Device::Cpu).chain(gpus()) {
        let mut flow = build(dev);
        // 8-bit values, as the loader gives them.
        let x = randn(&[64, 1, 28, 28], 1, DType::F32).tanh().unwrap().affine(127.5, 127.5).unwrap();
        let x: Vec<f32> = x.to_vec::<f32>().unwrap().iter().map(|v| v.round() / 127.5 - 1.0).collect();
        let x = Tensor::from_vec(x, &[64, 1, 28, 28], dev).unwrap();
        let mut rng = Rng::new(2);
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        // train_step reads its loss back, so each iteration ends drained; steps run on a
        // pool worker, as in kiln-train.
        g.bench_function(format!("{}/default/n64_s28", backend(dev)), |b| {
            b.iter(|| on_worker(|| flow.train_step(&x, &mut rng).unwrap()))
        });
        g.bench_function(format!("{}/sample/n64_s28", backend(dev)), |b| {
            b.iter(|| on_worker(|| flow.sample(64, 0.7, &mut rng).unwrap().to_vec::<f32>().unwrap()))
        });
        g.finish();
    }
}
