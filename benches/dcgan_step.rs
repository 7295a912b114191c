//! One full DCGAN training step (D on real and fake, then G; Adam) at the
//! reference size (64×64, batch 64, ngf = ndf = 64) and the default 32×32.
//! `cargo bench --bench dcgan_step`

mod common;

use common::{config, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::gan::{Dcgan, DcganConfig};
use kiln::tensor::Rng;
use kiln::{DType, Device};

fn dcgan_step(c: &mut Criterion) {
    for size in [64, 32] {
        let mut m = Dcgan::new(DcganConfig { image_size: size, ..Default::default() }, Device::Cpu, 0).unwrap();
        let real = randn(&[64, 1, size, size], 1, DType::F32).tanh().unwrap();
        let mut rng = Rng::new(2);
        let mut g = c.benchmark_group("dcgan_step");
        g.sample_size(10);
        g.bench_function(format!("cpu/default/n64_s{size}"), |b| {
            b.iter(|| {
                let z = m.noise(64, &mut rng).unwrap();
                m.train_step(&real, &z).unwrap()
            })
        });
        g.finish();
        // The same step on each GPU (train_step reads its losses back, so
        // each iteration ends with the device drained).
        for dev in common::gpus() {
            let mut m = Dcgan::new(DcganConfig { image_size: size, ..Default::default() }, dev, 0).unwrap();
            let real = real.to_device(dev).unwrap();
            let mut g = c.benchmark_group("dcgan_step");
            g.sample_size(10);
            let backend = if matches!(dev, Device::Cuda(_)) { "cuda" } else { "wgpu" };
            g.bench_function(format!("{backend}/default/n64_s{size}"), |b| {
                b.iter(|| {
                    let z = m.noise(64, &mut rng).unwrap();
                    m.train_step(&real, &z).unwrap()
                })
            });
            g.finish();
        }
    }
}

criterion_group! { name = benches; config = config(); targets = dcgan_step }
criterion_main!(benches);
