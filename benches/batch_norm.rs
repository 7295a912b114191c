//! batch_norm in training mode, forward and forward+backward, on DCGAN
//! shapes: D's (64, 128, 16, 16) and G's first (64, 512, 4, 4), whose rows
//! are 16 long. Bandwidth-bound: FLOPs counted as ~10 per element.
//! `cargo bench --bench batch_norm`

mod common;

use common::{bench, bench_gpu, config, randn, report_error, report_gpu_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::no_grad;
use kiln::{DType, Var};

fn batch_norm(c: &mut Criterion) {
    let gpus = common::gpus();
    for (ch, h) in [(128, 16), (512, 4)] {
        shape_benches(c, &gpus, ch, h);
    }
}

fn shape_benches(c: &mut Criterion, gpus: &[kiln::Device], ch: usize, h: usize) {
    let shape = [64, ch, h, h];
    let id = &format!("n64_c{ch}_h{h}");
    let x = randn(&shape, 1, DType::F32);
    let (w, b) = (randn(&[ch], 2, DType::F32), randn(&[ch], 3, DType::F32));
    let numel = x.numel() as f64;
    report_error(&format!("batch_norm_fwd/{id}"), |d| {
        let t = |v: &kiln::Tensor| v.to_dtype(d).unwrap();
        t(&x).batch_norm(None, None, Some(&t(&w)), Some(&t(&b)), true, 0.1, 1e-5).unwrap().to_vec_f64()
    });
    bench(c, "batch_norm_fwd", "one_pass", id, 5.0 * numel, || {
        let _g = no_grad();
        x.batch_norm(None, None, Some(&w), Some(&b), true, 0.1, 1e-5).unwrap();
    });
    let (xv, wv, bv) = (Var::new(&x).unwrap(), Var::new(&w).unwrap(), Var::new(&b).unwrap());
    let gy = randn(&shape, 4, DType::F32);
    bench(c, "batch_norm_fwd_bwd", "one_pass", id, 10.0 * numel, || {
        xv.batch_norm(None, None, Some(&wv), Some(&bv), true, 0.1, 1e-5).unwrap().backward_with(&gy, false).unwrap();
    });
    for &dev in gpus {
        report_gpu_error(&format!("batch_norm_fwd/{id}"), dev, |d, dt| {
            let t = |v: &kiln::Tensor| v.to_dtype(dt).unwrap().to_device(d).unwrap();
            t(&x).batch_norm(None, None, Some(&t(&w)), Some(&t(&b)), true, 0.1, 1e-5).unwrap().to_vec_f64()
        });
        let on = |t: &kiln::Tensor| t.to_device(dev).unwrap();
        let (xg, wg, bg, gyg) = (on(&x), on(&w), on(&b), on(&gy));
        bench_gpu(c, dev, "batch_norm_fwd", "workgroup_sums", id, 5.0 * numel, || {
            let _g = no_grad();
            xg.batch_norm(None, None, Some(&wg), Some(&bg), true, 0.1, 1e-5).unwrap();
        });
        let (xv, wv, bv) = (Var::new(&xg).unwrap(), Var::new(&wg).unwrap(), Var::new(&bg).unwrap());
        bench_gpu(c, dev, "batch_norm_fwd_bwd", "workgroup_sums", id, 10.0 * numel, || {
            xv.batch_norm(None, None, Some(&wv), Some(&bv), true, 0.1, 1e-5)
                .unwrap()
                .backward_with(&gyg, false)
                .unwrap();
        });
    }
}

criterion_group! { name = benches; config = config(); targets = batch_norm }
criterion_main!(benches);
