//! batch_norm in training mode, forward and forward+backward, on the DCGAN
//! shape (64, 128, 16, 16). Bandwidth-bound: FLOPs counted as ~10 per element.
//! `cargo bench --bench batch_norm`

mod common;

use common::{bench, config, randn, report_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::no_grad;
use kiln::{DType, Var};

fn batch_norm(c: &mut Criterion) {
    let shape = [64, 128, 16, 16];
    let id = "n64_c128_h16";
    let x = randn(&shape, 1, DType::F32);
    let (w, b) = (randn(&[128], 2, DType::F32), randn(&[128], 3, DType::F32));
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
}

criterion_group! { name = benches; config = config(); targets = batch_norm }
criterion_main!(benches);
