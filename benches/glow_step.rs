//! The default Glow (crates/flow; 2 levels of 24 steps, 16 hidden
//! channels): one training step (dequantisation, actnorm/1×1 conv/coupling
//! forward and backward, Adam) at batch 64 on 28×28 digits, and
//! 64 samples at T = 0.7 (every layer inverted, W⁻¹ on the host).
//! `cargo bench --bench glow_step`

mod common;

use common::{config, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::flow::{Glow, GlowConfig};
use kiln::tensor::Rng;
use kiln::{DType, Device};

fn glow_step(c: &mut Criterion) {
    let devices = std::iter::once(Device::Cpu).chain(common::gpus());
    for dev in devices {
        let backend = common::backend(dev);
        let mut model = Glow::new(GlowConfig::default(), dev, 0).unwrap();
        // 8-bit values, as the loader gives them.
        let x = randn(&[64, 1, 28, 28], 1, DType::F32).tanh().unwrap().affine(127.5, 127.5).unwrap();
        let x: Vec<f32> = x.to_vec::<f32>().unwrap().iter().map(|v| v.round() / 127.5 - 1.0).collect();
        let x = kiln::Tensor::from_vec(x, &[64, 1, 28, 28], dev).unwrap();
        let mut rng = Rng::new(2);
        let mut g = c.benchmark_group("glow_step");
        g.sample_size(10);
        // train_step reads its loss back, so each iteration ends drained; steps run on a
        // pool worker, as in kiln-train.
        g.bench_function(format!("{backend}/default/n64_s28"), |b| {
            b.iter(|| common::on_worker(|| model.flow.train_step(&x, &mut rng).unwrap()))
        });
        g.bench_function(format!("{backend}/sample/n64_s28"), |b| {
            b.iter(|| common::on_worker(|| model.flow.sample(64, 0.7, &mut rng).unwrap().to_vec::<f32>().unwrap()))
        });
        g.finish();
    }
}

criterion_group! { name = benches; config = config(); targets = glow_step }
criterion_main!(benches);
