//! Times N DCGAN training steps on the CPU (batch 64; 64×64 unless a size
//! is given) and prints the best and median step, for quick A/B runs of
//! two builds (copy the binary, alternate them: the machine's clock drifts,
//! so only interleaved runs compare): `cargo run --release --example
//! dcgan_steps -- 8 64`. The criterion bench `dcgan_step` is the reference.
use kiln::gan::{Dcgan, DcganConfig};
use kiln::tensor::Rng;
use kiln::{DType, Device, Tensor};

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let size: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let mut m = Dcgan::new(DcganConfig { image_size: size, ..Default::default() }, Device::Cpu, 0).unwrap();
    let real = Tensor::randn(&[64, 1, size, size], 0.0, 1.0, DType::F32, Device::Cpu, &mut Rng::new(1))
        .unwrap()
        .tanh()
        .unwrap();
    let mut rng = Rng::new(2);
    let mut times = Vec::new();
    for _ in 0..steps + 2 {
        let t = std::time::Instant::now();
        let z = m.noise(64, &mut rng).unwrap();
        m.train_step(&real, &z).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let t = &mut times[2..];
    t.sort_by(f64::total_cmp);
    println!("best {:.1} ms median {:.1} ms", t[0], t[t.len() / 2]);
}
