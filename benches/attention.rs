//! Fused scaled-dot-product attention, forward and forward+backward, at
//! B=8 H=4 L=256 with head dims 64 and 32. `cargo bench --bench attention`

mod common;

use common::{bench, bench_gpu, config, randn, report_error, report_gpu_error};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::no_grad;
use kiln::{DType, Tensor, Var};

fn attention(c: &mut Criterion) {
    let gpus = common::gpus();
    for d in [64, 32] {
        let shape = [8, 4, 256, d];
        let id = format!("b8_h4_l256_d{d}");
        let (q, k, v) = (randn(&shape, 1, DType::F32), randn(&shape, 2, DType::F32), randn(&shape, 3, DType::F32));
        // QKᵀ and PV: 2·2·B·H·L·L·d
        let flops = 4.0 * (8 * 4 * 256 * 256 * d) as f64;
        report_error(&format!("attention_fwd/{id}"), |dt| {
            let t = |x: &Tensor| x.to_dtype(dt).unwrap();
            Tensor::scaled_dot_product_attention(&t(&q), &t(&k), &t(&v), None, false, None).unwrap().to_vec_f64()
        });
        bench(c, "attention_fwd", "online_softmax", &id, flops, || {
            let _g = no_grad();
            Tensor::scaled_dot_product_attention(&q, &k, &v, None, false, None).unwrap();
        });
        let (qv, kv, vv) = (Var::new(&q).unwrap(), Var::new(&k).unwrap(), Var::new(&v).unwrap());
        let gy = randn(&shape, 4, DType::F32);
        // The backward is about 2.5× the forward's FLOPs.
        bench(c, "attention_fwd_bwd", "online_softmax", &id, 3.5 * flops, || {
            Tensor::scaled_dot_product_attention(&qv, &kv, &vv, None, false, None)
                .unwrap()
                .backward_with(&gy, false)
                .unwrap();
        });
        for &dev in &gpus {
            report_gpu_error(&format!("attention_fwd/{id}"), dev, |d, dt| {
                let t = |x: &Tensor| x.to_dtype(dt).unwrap().to_device(d).unwrap();
                Tensor::scaled_dot_product_attention(&t(&q), &t(&k), &t(&v), None, false, None).unwrap().to_vec_f64()
            });
            let on = |t: &Tensor| t.to_device(dev).unwrap();
            let (qg, kg, vg, gyg) = (on(&q), on(&k), on(&v), on(&gy));
            bench_gpu(c, dev, "attention_fwd", "online_softmax", &id, flops, || {
                let _g = no_grad();
                Tensor::scaled_dot_product_attention(&qg, &kg, &vg, None, false, None).unwrap();
            });
            let (qv, kv, vv) = (Var::new(&qg).unwrap(), Var::new(&kg).unwrap(), Var::new(&vg).unwrap());
            bench_gpu(c, dev, "attention_fwd_bwd", "online_softmax", &id, 3.5 * flops, || {
                Tensor::scaled_dot_product_attention(&qv, &kv, &vv, None, false, None)
                    .unwrap()
                    .backward_with(&gyg, false)
                    .unwrap();
            });
        }
    }
}

criterion_group! { name = benches; config = config(); targets = attention }
criterion_main!(benches);
