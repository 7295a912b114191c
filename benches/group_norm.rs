//! group_norm (8 groups, with weight and bias), forward and
//! forward+backward, on the default U-Net's two widths at batch 64:
//! (64, 16, 28, 28) and (64, 32, 14, 14). The CPU has fused kernels
//! (`fused`); the GPUs run batch_norm's kernels on the (1, N·G, −1) view
//! plus the per-channel affine (`batch_norm_view`).
//! Bandwidth-bound: FLOPs counted as ~10 per element.
//! `cargo bench --bench group_norm`

mod common;

use common::{bench, bench_gpu, config, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::no_grad;
use kiln::{DType, Var};

fn group_norm(c: &mut Criterion) {
    let gpus = common::gpus();
    for (ch, h) in [(16, 28), (32, 14)] {
        let shape = [64, ch, h, h];
        let id = &format!("n64_c{ch}_h{h}_g8");
        let x = randn(&shape, 1, DType::F32);
        let (w, b) = (randn(&[ch], 2, DType::F32), randn(&[ch], 3, DType::F32));
        let gy = randn(&shape, 4, DType::F32);
        let numel = x.numel() as f64;
        for dev in std::iter::once(kiln::Device::Cpu).chain(gpus.iter().copied()) {
            let on = |t: &kiln::Tensor| t.to_device(dev).unwrap();
            let (xd, wd, bd, gyd) = (on(&x), on(&w), on(&b), on(&gy));
            let fwd = || {
                let _g = no_grad();
                xd.group_norm(8, Some(&wd), Some(&bd), 1e-5).unwrap();
            };
            let (xv, wv, bv) = (Var::new(&xd).unwrap(), Var::new(&wd).unwrap(), Var::new(&bd).unwrap());
            let fwd_bwd = || {
                xv.group_norm(8, Some(&wv), Some(&bv), 1e-5).unwrap().backward_with(&gyd, false).unwrap();
            };
            match dev {
                kiln::Device::Cpu => {
                    bench(c, "group_norm_fwd", "fused", id, 5.0 * numel, fwd);
                    bench(c, "group_norm_fwd_bwd", "fused", id, 10.0 * numel, fwd_bwd);
                }
                _ => {
                    bench_gpu(c, dev, "group_norm_fwd", "batch_norm_view", id, 5.0 * numel, fwd);
                    bench_gpu(c, dev, "group_norm_fwd_bwd", "batch_norm_view", id, 10.0 * numel, fwd_bwd);
                }
            }
        }
    }
}

criterion_group! { name = benches; config = config(); targets = group_norm }
criterion_main!(benches);
