//! matmul (sgemm) at 1024³ and at the im2col shapes of a DCGAN layer.
//! `cargo bench --bench matmul`

mod common;

use common::{bench, bench_gpu, config, randn, report_error, report_gpu_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::DType;
use kiln::tensor::no_grad;

fn matmul(c: &mut Criterion) {
    let gpus = common::gpus();
    for (m, k, n) in [(1024, 1024, 1024), (128, 1024, 256), (64, 4096, 1024)] {
        let id = format!("m{m}_k{k}_n{n}");
        let (a, b) = (randn(&[m, k], 1, DType::F32), randn(&[k, n], 2, DType::F32));
        report_error(&format!("matmul_fwd/{id}"), |d| {
            a.to_dtype(d).unwrap().matmul(&b.to_dtype(d).unwrap()).unwrap().to_vec_f64()
        });
        bench(c, "matmul_fwd", kiln::tensor::cpu::sgemm_name(), &id, 2.0 * (m * k * n) as f64, || {
            let _g = no_grad();
            a.matmul(&b).unwrap();
        });
        for &dev in &gpus {
            report_gpu_error(&format!("matmul_fwd/{id}"), dev, |d, dt| {
                let t = |v: &kiln::Tensor| v.to_dtype(dt).unwrap().to_device(d).unwrap();
                t(&a).matmul(&t(&b)).unwrap().to_vec_f64()
            });
            let (ag, bg) = (a.to_device(dev).unwrap(), b.to_device(dev).unwrap());
            bench_gpu(c, dev, "matmul_fwd", "smem_4x4", &id, 2.0 * (m * k * n) as f64, || {
                let _g = no_grad();
                ag.matmul(&bg).unwrap();
            });
        }
    }
}

/// The micro-kernel alone on cache-resident panels, on every thread at
/// once (as `benches/peak.rs` runs its FMA loop): the ceiling the GEMMs'
/// kernel time runs at, so "% of peak" separates kernel from packing.
fn kernel_ceiling(c: &mut Criterion) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    for (panels, what) in [(1, "b_in_l1"), (10, "b_in_l2")] {
        let reps = 1000 / panels;
        let Some(flops) = kiln::tensor::cpu::sgemm_kernel_sweep(256, panels, reps) else { return };
        let id = format!("kc256_{what}");
        bench(c, "matmul_kernel", kiln::tensor::cpu::sgemm_name(), &id, threads as f64 * flops, || {
            (0..threads).into_par_iter().for_each(|_| {
                kiln::tensor::cpu::sgemm_kernel_sweep(256, panels, reps);
            });
        });
    }
}

criterion_group! { name = benches; config = config(); targets = matmul, kernel_ceiling }
criterion_main!(benches);
