//! One WGAN-GP critic step, where frameworks are slow: G's forward under
//! no-grad, D on real and fake, the gradient penalty on interpolates (∇ₓD
//! with its graph, then the backward through it: double backward through
//! convolutions, LayerNorm and leaky ReLU), Adam(1e-4, β = 0, 0.9). The
//! DCGAN networks at 32×32, batch 64, ngf = ndf = 64, λ = 10.
//! `cargo bench --bench gan_critic_step`

mod common;

use common::{config, on_worker, randn};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::gan::loss::{d_loss, gradient_penalty};
use kiln::gan::{Dcgan, DcganConfig, GanLoss};
use kiln::nn::Module;
use kiln::tensor::{Rng, no_grad};
use kiln::{DType, Device, Result, Tensor};

fn wgan_gp() -> DcganConfig {
    DcganConfig { loss: GanLoss::WganGp, lr: 1e-4, beta1: 0.0, beta2: 0.9, ..Default::default() }
}

fn critic_step(m: &mut Dcgan, real: &Tensor, rng: &mut Rng) -> Result<f64> {
    let z = m.noise(64, rng)?;
    let fake = {
        let _g = no_grad();
        m.g.forward(&z, true)?
    };
    let alpha = Tensor::rand(&[64, 1, 1, 1], DType::F32, real.device(), rng)?;
    let net = &m.d;
    let d = |x: &Tensor| -> Result<Tensor> {
        let out = net.forward(x, true)?;
        out.reshape(&[out.numel()])
    };
    let loss =
        d_loss(GanLoss::WganGp, &d(real)?, &d(&fake)?, 1.0)?.add(&gradient_penalty(&d, real, &fake, &alpha, 10.0)?)?;
    m.opt_d.step(&loss.backward()?)?;
    loss.to_scalar()
}

fn gan_critic_step(c: &mut Criterion) {
    let real = randn(&[64, 1, 32, 32], 1, DType::F32).tanh().unwrap();
    let mut m = Dcgan::new(wgan_gp(), Device::Cpu, 0).unwrap();
    let mut rng = Rng::new(2);
    let mut g = c.benchmark_group("gan_critic_step");
    g.sample_size(10);
    g.bench_function("cpu/wgan_gp/n64_s32", |b| b.iter(|| on_worker(|| critic_step(&mut m, &real, &mut rng).unwrap())));
    g.finish();
    for dev in common::gpus() {
        let mut m = Dcgan::new(wgan_gp(), dev, 0).unwrap();
        let real = real.to_device(dev).unwrap();
        let mut g = c.benchmark_group("gan_critic_step");
        g.sample_size(10);
        // The loss is read back: each iteration ends with the device drained.
        g.bench_function(format!("{}/wgan_gp/n64_s32", common::backend(dev)), |b| {
            b.iter(|| critic_step(&mut m, &real, &mut rng).unwrap())
        });
        g.finish();
    }
}

criterion_group! { name = benches; config = config(); targets = gan_critic_step }
criterion_main!(benches);
