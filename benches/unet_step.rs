//! The default DDPM (crates/diffusion): one training step (timesteps and
//! noise drawn, U-Net forward and backward, clipping, Adam, EMA update) at
//! batch 64 on 28×28, and one no-grad U-Net forward at batch 256, the
//! unit of sampling cost (DDIM-50 of N images is 50·N/256 of them).
//! `cargo bench --bench unet_step`

mod common;

use common::{config, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::diffusion::{Ddpm, DdpmConfig, UNet};
use kiln::nn::VarStore;
use kiln::tensor::{Rng, no_grad};
use kiln::{DType, Device};

fn unet_step(c: &mut Criterion) {
    let devices = std::iter::once(Device::Cpu).chain(common::gpus());
    for dev in devices {
        let backend = common::backend(dev);
        let mut model = Ddpm::new(DdpmConfig::default(), dev, 0).unwrap();
        let x = randn(&[64, 1, 28, 28], 1, DType::F32).tanh().unwrap().to_device(dev).unwrap();
        let labels = vec![0u8; 64];
        let mut rng = Rng::new(2);
        let mut g = c.benchmark_group("unet_step");
        g.sample_size(10);
        // train_step reads its loss back, so each iteration ends drained; steps run on a
        // pool worker, as in kiln-train.
        g.bench_function(format!("{backend}/default/n64_s28"), |b| {
            b.iter(|| common::on_worker(|| model.train_step(&x, &labels, &mut rng).unwrap()))
        });
        let store = VarStore::new(dev, DType::F32, 0);
        let net = UNet::new(&store.root(), &DdpmConfig::default().unet_shape()).unwrap();
        let xs = randn(&[256, 1, 28, 28], 3, DType::F32).to_device(dev).unwrap();
        let t = vec![500.0; 256];
        g.bench_function(format!("{backend}/forward/n256_s28"), |b| {
            b.iter(|| {
                common::on_worker(|| {
                    let _g = no_grad();
                    net.forward(&xs, &t, None, false).unwrap().to_vec::<f32>().unwrap()
                })
            })
        });
        g.finish();
    }
}

criterion_group! { name = benches; config = config(); targets = unet_step }
criterion_main!(benches);
