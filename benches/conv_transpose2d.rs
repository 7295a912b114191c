//! conv_transpose2d forward and forward+backward on the DCGAN generator's
//! layers. `cargo bench --bench conv_transpose2d`

mod common;

use common::{bench, bench_gpu, config, randn, report_error, report_gpu_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::{ConvTranspose2dParams, no_grad};
use kiln::{DType, Tensor, Var};

/// (n, cin, h, cout) for k4 s2 p1 layers, h → 2h.
pub const SHAPES: &[(usize, usize, usize, usize)] =
    &[(64, 512, 4, 256), (64, 256, 8, 128), (64, 128, 16, 64), (64, 64, 32, 1)];

fn conv_transpose2d(c: &mut Criterion) {
    let gpus = common::gpus();
    let params = ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    for &(n, cin, h, cout) in SHAPES {
        let flops = 2.0 * (n * cin * h * h * cout * 16) as f64;
        let shape = format!("n{n}_c{cin}_h{h}_o{cout}_k4s2p1");
        // With >= 16 channels each side all three passes run as Winograd
        // F(2×2, 2×2) on AVX-512 (`flops` stays the direct count).
        let variant = if cin >= 16 && cout >= 16 { "winograd_f2x2_2x2" } else { "col2im" };
        let x = randn(&[n, cin, h, h], 1, DType::F32);
        let w = randn(&[cin, cout, 4, 4], 2, DType::F32).mul_scalar(0.05).unwrap();
        report_error(&format!("conv_transpose2d_fwd/{shape}"), |d| {
            x.to_dtype(d).unwrap().conv_transpose2d(&w.to_dtype(d).unwrap(), None, params).unwrap().to_vec_f64()
        });
        bench(c, "conv_transpose2d_fwd", variant, &shape, flops, || {
            let _g = no_grad();
            x.conv_transpose2d(&w, None, params).unwrap();
        });
        let (xv, wv) = (Var::new(&x).unwrap(), Var::new(&w).unwrap());
        let gy = randn(&[n, cout, 2 * h, 2 * h], 3, DType::F32);
        bench(c, "conv_transpose2d_fwd_bwd", variant, &shape, 3.0 * flops, || {
            xv.conv_transpose2d(&wv, None, params).unwrap().backward_with(&gy, false).unwrap();
        });
        for &dev in &gpus {
            report_gpu_error(&format!("conv_transpose2d_fwd/{shape}"), dev, |d, dt| {
                let t = |v: &Tensor| v.to_dtype(dt).unwrap().to_device(d).unwrap();
                t(&x).conv_transpose2d(&t(&w), None, params).unwrap().to_vec_f64()
            });
            let on = |t: &Tensor| t.to_device(dev).unwrap();
            let (xg, wg, gyg) = (on(&x), on(&w), on(&gy));
            bench_gpu(c, dev, "conv_transpose2d_fwd", "implicit_gemm", &shape, flops, || {
                let _g = no_grad();
                xg.conv_transpose2d(&wg, None, params).unwrap();
            });
            let (xv, wv) = (Var::new(&xg).unwrap(), Var::new(&wg).unwrap());
            bench_gpu(c, dev, "conv_transpose2d_fwd_bwd", "implicit_gemm", &shape, 3.0 * flops, || {
                xv.conv_transpose2d(&wv, None, params).unwrap().backward_with(&gyg, false).unwrap();
            });
        }
    }
}

criterion_group! { name = benches; config = config(); targets = conv_transpose2d }
criterion_main!(benches);
