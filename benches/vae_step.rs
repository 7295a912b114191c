//! One VAE training step (binarize, encode, reparameterise, decode, ELBO,
//! backward, Adam) with the default architecture at batch 128 on 28×28,
//! and the held-out IWAE estimate's inner pass (log weights of 8 draws for
//! 500 digits). `cargo bench --bench vae_step`

mod common;

use common::{config, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::tensor::Rng;
use kiln::vae::{Vae, VaeConfig};
use kiln::{DType, Device};

fn vae_step(c: &mut Criterion) {
    let devices = std::iter::once(Device::Cpu).chain(common::gpus());
    for dev in devices {
        let backend = common::backend(dev);
        let mut vae = Vae::new(VaeConfig::default(), dev, 0).unwrap();
        let x = randn(&[128, 1, 28, 28], 1, DType::F32).tanh().unwrap().to_device(dev).unwrap();
        let mut rng = Rng::new(2);
        let mut g = c.benchmark_group("vae_step");
        g.sample_size(10);
        // train_step reads its numbers back, so each iteration ends drained.
        g.bench_function(format!("{backend}/default/n128_s28"), |b| b.iter(|| vae.train_step(&x, &mut rng).unwrap()));
        let held = randn(&[500, 1, 28, 28], 3, DType::F32).tanh().unwrap().to_device(dev).unwrap();
        let target = vae.target(&held, &mut rng).unwrap();
        g.bench_function(format!("{backend}/iwae_pass/n500_k8"), |b| {
            b.iter(|| vae.log_weights(&target, 8, &mut rng).unwrap().to_vec::<f32>().unwrap())
        });
        g.finish();
    }
}

criterion_group! { name = benches; config = config(); targets = vae_step }
criterion_main!(benches);
