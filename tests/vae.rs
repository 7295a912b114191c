//! The VAE's defining identities: its ELBO against the formula worked by
//! hand (sums over pixels and latent dims, mean over the batch), the IWAE
//! bound at k = 1 against the same draw, IWAE ≥ ELBO and growing with k,
//! gradients through the reparameterisation, and the same run on wgpu and
//! CUDA as on the CPU. The run loop's suite (resume, NaN stop, ...) runs
//! for the VAE in train.rs.

use kiln::tensor::Rng;
use kiln::tensor::testing::gradcheck;
use kiln::vae::elbo::{HALF_LN_2PI, kl_per_dim};
use kiln::vae::{Likelihood, Vae, VaeConfig};
use kiln::{DType, Device, Tensor};

use crate::common::t64;

pub fn tiny_vae() -> VaeConfig {
    VaeConfig { latent: 3, width: 4, hidden: 16, image_size: 12, iwae_k: 4, ..Default::default() }
}

/// Eight shipped digits at 12×12 in [-1, 1].
fn digits(n: usize) -> Tensor {
    let data = kiln::data::load_mnist(&kiln::data::shipped_mnist_dir()).unwrap();
    let x = kiln::data::scaled_images(&data, &(0..n).collect::<Vec<_>>(), 12);
    Tensor::from_vec(x, &[n, 1, 12, 12], Device::Cpu).unwrap()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// (log p(x|z) per image, KL per image, z, ε) worked out on the host from the
/// model's encoder and decoder outputs, with ε drawn as the model draws it.
fn by_hand(vae: &Vae, target: &Tensor, rng: &mut Rng) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mu, logvar) = vae.encode(&target.affine(2.0, -1.0).unwrap()).unwrap();
    let eps = Tensor::randn(mu.shape(), 0.0, 1.0, DType::F32, Device::Cpu, rng).unwrap();
    let (m, lv, e) = (host(&mu), host(&logvar), host(&eps));
    let z: Vec<f64> = (0..m.len()).map(|i| m[i] + (0.5 * lv[i]).exp() * e[i]).collect();
    let zt = Tensor::from_f64(&z, mu.shape(), DType::F32, Device::Cpu).unwrap();
    let (logits, t) = (host(&vae.decode(&zt).unwrap()), host(target));
    let (n, d, p) = (mu.shape()[0], mu.shape()[1], t.len() / mu.shape()[0]);
    let ll =
        (0..n).map(|i| (0..p).map(|j| t[i * p + j] * logits[i * p + j] - softplus(logits[i * p + j])).sum()).collect();
    let kl = (0..n)
        .map(|i| (0..d).map(|j| 0.5 * (lv[i * d + j].exp() + m[i * d + j].powi(2) - 1.0 - lv[i * d + j])).sum())
        .collect();
    (ll, kl, z, e)
}

#[test]
fn the_elbo_is_the_formula_summed_over_pixels_and_latents() {
    let vae = Vae::new(tiny_vae(), Device::Cpu, 1).unwrap();
    let target = vae.target(&digits(8), &mut Rng::new(2)).unwrap();
    let t = host(&target);
    assert!(t.iter().all(|&v| v == 0.0 || v == 1.0) && t.contains(&1.0), "binarized");
    let elbo = vae.elbo(&target, &mut Rng::new(3)).unwrap();
    let (ll, kl, _, _) = by_hand(&vae, &target, &mut Rng::new(3));
    for i in 0..8 {
        let want = ll[i] - kl[i];
        assert!((elbo[i] - want).abs() < 1e-4 * want.abs(), "image {i}: {} vs {want}", elbo[i]);
    }
    // A 144-pixel Bernoulli image at logits near 0 costs about 144 ln 2 nats.
    assert!(elbo.iter().all(|&e| (-144.0 * 2f64.ln() * 1.5..-144.0 * 2f64.ln() * 0.5).contains(&e)), "{elbo:?}");
}

#[test]
fn iwae_at_k_1_is_the_log_weight_of_the_same_draw() {
    let vae = Vae::new(tiny_vae(), Device::Cpu, 4).unwrap();
    let target = vae.target(&digits(8), &mut Rng::new(5)).unwrap();
    let iwae = vae.iwae(&target, 1, 1, &mut Rng::new(6)).unwrap();
    let (mu, logvar) = vae.encode(&target.affine(2.0, -1.0).unwrap()).unwrap();
    let (ll, _, z, e) = by_hand(&vae, &target, &mut Rng::new(6));
    let lv = host(&logvar);
    let d = mu.shape()[1];
    for i in 0..8 {
        let log_p_z: f64 = (0..d).map(|j| -0.5 * z[i * d + j].powi(2) - HALF_LN_2PI).sum();
        let log_q: f64 = (0..d).map(|j| -0.5 * e[i * d + j].powi(2) - HALF_LN_2PI - 0.5 * lv[i * d + j]).sum();
        let want = ll[i] + log_p_z - log_q;
        assert!((iwae[i] - want).abs() < 1e-4 * want.abs(), "image {i}: {} vs {want}", iwae[i]);
    }
}

#[test]
fn iwae_bounds_the_elbo_and_tightens_with_k() {
    // A model a few steps into training (an untrained one has q ≈ prior).
    let mut vae = Vae::new(tiny_vae(), Device::Cpu, 7).unwrap();
    let x = digits(64);
    let mut rng = Rng::new(8);
    for _ in 0..30 {
        vae.train_step(&x, &mut rng).unwrap();
    }
    let target = vae.target(&x, &mut Rng::new(9)).unwrap();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    // Averages over 64 digits with fixed seeds; the k = 1 estimate is the
    // Monte Carlo ELBO, so it agrees with the analytic-KL ELBO to within
    // its noise (measured: 0.3 nats apart).
    let elbo = mean((0..20).flat_map(|s| vae.elbo(&target, &mut Rng::new(100 + s)).unwrap()).collect());
    let iwae = |k: usize| mean(vae.iwae(&target, k, 64, &mut Rng::new(k as u64)).unwrap());
    let (k1, k10, k100) = (
        mean((0..20).flat_map(|s| vae.iwae(&target, 1, 1, &mut Rng::new(200 + s)).unwrap()).collect()),
        iwae(10),
        iwae(100),
    );
    assert!((k1 - elbo).abs() < 1.0, "k = 1: {k1}, ELBO {elbo}");
    assert!(k10 > elbo && k100 > k10, "ELBO {elbo}, k = 10: {k10}, k = 100: {k100}");
}

#[test]
fn gradients_flow_through_the_reparameterisation() {
    // z = μ + exp(logvar / 2)·ε with ε fixed; loss = Σ z² + KL(μ, logvar).
    let eps = t64(&[0.3, -1.2, 0.7, 0.1, -0.4, 2.0], &[2, 3]);
    let f = |x: &[Tensor]| -> kiln::Result<Tensor> {
        let z = x[0].add(&x[1].mul_scalar(0.5)?.exp()?.mul(&eps)?)?;
        z.sqr()?.sum_all()?.add(&kl_per_dim(&x[0], &x[1])?.sum_all()?)
    };
    let mu = t64(&[0.5, -0.2, 1.1, 0.0, 0.8, -1.5], &[2, 3]);
    let logvar = t64(&[-0.5, 0.2, 0.0, -1.0, 0.4, 0.1], &[2, 3]);
    gradcheck(f, &[mu, logvar]).unwrap();
}

#[test]
fn the_reconstruction_term_trains_the_encoder_through_z() {
    // −log p(x|z) with z = μ + σ·ε depends on the encoder only through z: a
    // detached sample would leave the encoder's head without a gradient.
    let vae = Vae::new(tiny_vae(), Device::Cpu, 3).unwrap();
    let target = vae.target(&digits(4), &mut Rng::new(1)).unwrap();
    let (ll, _) = vae.elbo_terms(&target, &mut Rng::new(2)).unwrap();
    let grads = ll.mean_all().unwrap().neg().unwrap().backward().unwrap();
    let head = vae.store.trainable().into_iter().find(|(n, _)| n == "enc.head.weight").unwrap().1;
    let g = host(grads.get(&head).expect("the encoder gets a gradient through z"));
    // Both halves of the head (μ rows and log σ² rows) receive it.
    let half = g.len() / 2;
    assert!(g[..half].iter().any(|v| v.abs() > 1e-9) && g[half..].iter().any(|v| v.abs() > 1e-9));
}

#[test]
fn the_gaussian_likelihood_is_its_density() {
    let (mean, x) = (t64(&[0.1, 0.5, 0.9, 0.3], &[1, 1, 2, 2]), t64(&[0.2, 0.5, 0.4, 1.0], &[1, 1, 2, 2]));
    let sigma: f64 = 0.25;
    let ll = kiln::vae::elbo::log_likelihood(Likelihood::Gaussian, &mean, &x, Some(&t64(&[sigma.ln()], &[1])));
    let want: f64 = [(0.1, 0.2), (0.5, 0.5), (0.9, 0.4), (0.3, 1.0)]
        .iter()
        .map(|(m, v): &(f64, f64)| -0.5 * ((v - m) / sigma).powi(2) - sigma.ln() - HALF_LN_2PI)
        .sum();
    assert!((ll.unwrap().to_vec_f64()[0] - want).abs() < 1e-12);
}

#[test]
fn free_bits_count_each_latent_dimension_as_at_least_lambda() {
    let cfg = VaeConfig { free_bits: 2.0, ..tiny_vae() };
    let mut vae = Vae::new(cfg, Device::Cpu, 5).unwrap();
    let x = digits(8);
    // The step's draws, repeated: binarization, then ε.
    let mut rng = Rng::new(6);
    let target = vae.target(&x, &mut rng).unwrap();
    let (ll, kl) = vae.elbo_terms(&target, &mut rng).unwrap();
    let (ll, kl) = (host(&ll), host(&kl));
    let d = 3;
    let recon = -ll.iter().sum::<f64>() / 8.0;
    let kl_term: f64 = (0..d).map(|j| ((0..8).map(|i| kl[i * d + j]).sum::<f64>() / 8.0).max(2.0)).sum();
    let stats = vae.train_step(&x, &mut Rng::new(6)).unwrap();
    assert!((stats.loss - (recon + kl_term)).abs() < 1e-4 * stats.loss.abs(), "{stats:?} vs {}", recon + kl_term);
    // The reported ELBO is the plain one, whatever free bits add to the loss.
    let plain = -(recon + kl.iter().sum::<f64>() / 8.0);
    assert!((stats.elbo - plain).abs() < 1e-4 * plain.abs());
}

#[test]
fn the_likelihood_options_train_and_sample() {
    for (likelihood, sigma) in [(Likelihood::Grey, 0.1), (Likelihood::Gaussian, 0.1), (Likelihood::Gaussian, 0.0)] {
        let mut vae =
            Vae::new(VaeConfig { likelihood, sigma, free_bits: 0.5, kl_warmup: 5, ..tiny_vae() }, Device::Cpu, 1)
                .unwrap();
        let x = digits(16);
        let first = vae.train_step(&x, &mut Rng::new(1)).unwrap();
        // Warm-up: the first step weighs the KL by 0 (the optimizer had taken no step).
        assert!((first.loss - first.recon).abs() < 1e-4 * first.recon.abs(), "{likelihood:?}: {first:?}");
        let s = vae.sample(4, &mut Rng::new(2)).unwrap();
        assert_eq!(s.shape(), [4, 1, 12, 12]);
        assert!(host(&s).iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

#[test]
fn wgpu_and_cuda_runs_match_the_cpu() {
    crate::train::gpu_runs_match_the_cpu::<Vae>(&tiny_vae(), "vae");
}

#[test]
fn the_manifold_map_walks_normal_quantiles() {
    use kiln::vae::pictures::{manifold, normal_quantile};
    for (p, q) in [(0.5, 0.0), (0.975, 1.959_963_985), (0.001, -3.090_232_306), (0.8, 0.841_621_234)] {
        assert!((normal_quantile(p) - q).abs() < 1e-8, "Φ⁻¹({p}) = {} not {q}", normal_quantile(p));
    }
    let vae = Vae::new(VaeConfig { latent: 2, ..tiny_vae() }, Device::Cpu, 1).unwrap();
    let m = manifold(&vae, 4).unwrap();
    assert_eq!(m.shape(), [16, 1, 12, 12]);
    // Corners differ: the grid spans the latent plane.
    let v = host(&m);
    assert_ne!(v[..144], v[15 * 144..]);
}
