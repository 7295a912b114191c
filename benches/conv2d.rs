//! conv2d forward and forward+backward (input and weight gradients) on the
//! DCGAN discriminator's layers and two U-Net 3×3 layers (32×32 and 16×16 maps).
//! `cargo bench --bench conv2d`

mod common;

use common::{bench, bench_gpu, config, randn, report_error, report_gpu_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::{Conv2dParams, no_grad};
use kiln::{DType, Tensor, Var};

/// (n, cin, h, cout, k, stride, pad) as used by the models.
pub const SHAPES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (64, 1, 64, 64, 4, 2, 1),
    (64, 64, 32, 128, 4, 2, 1),
    (64, 128, 16, 256, 4, 2, 1),
    (64, 256, 8, 512, 4, 2, 1),
    (32, 64, 32, 64, 3, 1, 1),
    (32, 128, 16, 128, 3, 1, 1),
];

fn conv2d(c: &mut Criterion) {
    let gpus = common::gpus();
    for &(n, cin, h, cout, k, s, p) in SHAPES {
        let params = Conv2dParams { stride: [s, s], padding: [p, p], ..Default::default() };
        let oh = (h + 2 * p - k) / s + 1;
        let flops = 2.0 * (n * cout * oh * oh * cin * k * k) as f64;
        let shape = format!("n{n}_c{cin}_h{h}_o{cout}_k{k}s{s}p{p}");
        // On AVX-512, 3×3 stride 1 with wide rows runs as Winograd F(2×2,
        // 3×3) and 4×4 stride 2 with >= 16 channels each side as F(2×2, 2×2)
        // (forward, input and weight gradients); `flops` stays the direct
        // convolution's count, so their GFLOP/s is an effective rate.
        let variant = match (k, s) {
            (3, 1) => "winograd_f2x2_3x3",
            (4, 2) if cin >= 16 && cout >= 16 => "winograd_f2x2_2x2",
            _ => "im2col",
        };
        let x = randn(&[n, cin, h, h], 1, DType::F32);
        let w = randn(&[cout, cin, k, k], 2, DType::F32).mul_scalar(0.05).unwrap();
        report_error(&format!("conv2d_fwd/{shape}"), |d| {
            x.to_dtype(d).unwrap().conv2d(&w.to_dtype(d).unwrap(), None, params).unwrap().to_vec_f64()
        });
        bench(c, "conv2d_fwd", variant, &shape, flops, || {
            let _g = no_grad();
            x.conv2d(&w, None, params).unwrap();
        });
        let (xv, wv) = (Var::new(&x).unwrap(), Var::new(&w).unwrap());
        let gy = randn(&[n, cout, oh, oh], 3, DType::F32);
        bench(c, "conv2d_fwd_bwd", variant, &shape, 3.0 * flops, || {
            let y: Tensor = xv.conv2d(&wv, None, params).unwrap();
            y.backward_with(&gy, false).unwrap();
        });
        for &dev in &gpus {
            report_gpu_error(&format!("conv2d_fwd/{shape}"), dev, |d, dt| {
                let t = |v: &Tensor| v.to_dtype(dt).unwrap().to_device(d).unwrap();
                t(&x).conv2d(&t(&w), None, params).unwrap().to_vec_f64()
            });
            let on = |t: &Tensor| t.to_device(dev).unwrap();
            let (xg, wg, gyg) = (on(&x), on(&w), on(&gy));
            bench_gpu(c, dev, "conv2d_fwd", "implicit_gemm", &shape, flops, || {
                let _g = no_grad();
                xg.conv2d(&wg, None, params).unwrap();
            });
            let (xv, wv) = (Var::new(&xg).unwrap(), Var::new(&wg).unwrap());
            bench_gpu(c, dev, "conv2d_fwd_bwd", "implicit_gemm", &shape, 3.0 * flops, || {
                xv.conv2d(&wv, None, params).unwrap().backward_with(&gyg, false).unwrap();
            });
        }
    }
}

criterion_group! { name = benches; config = config(); targets = conv2d }
criterion_main!(benches);
