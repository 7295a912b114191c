//! What a VAE is looked at with besides its samples: reconstructions,
//! interpolations in latent space, and for a 2-D latent the manifold map.

use kiln_tensor::{DType, Result, Tensor};

use crate::model::Vae;

/// Rows of 8 inputs, each followed by a row of their reconstructions
/// (decoder means at z = μ(x)): `images` (n, c, s, s) in [-1, 1], n a multiple of 8.
pub fn reconstructions(vae: &Vae, images: &Tensor) -> Result<Tensor> {
    let recon = vae.decode_images(&vae.encode_mean(images)?)?;
    let n = images.shape()[0];
    let mut rows = vec![];
    for r in 0..n / 8 {
        rows.push(images.narrow(0, 8 * r, 8)?);
        rows.push(recon.narrow(0, 8 * r, 8)?);
    }
    Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)
}

/// A row of `steps` decoder means on the line from μ(a) to μ(b) for each
/// pair (a[i], b[i]).
pub fn interpolations(vae: &Vae, a: &Tensor, b: &Tensor, steps: usize) -> Result<Tensor> {
    let (za, zb) = (vae.encode_mean(a)?, vae.encode_mean(b)?);
    let mut rows = vec![];
    for i in 0..a.shape()[0] {
        let (p, q) = (za.narrow(0, i, 1)?, zb.narrow(0, i, 1)?);
        for s in 0..steps {
            let t = s as f64 / (steps - 1).max(1) as f64;
            rows.push(p.mul_scalar(1.0 - t)?.add(&q.mul_scalar(t)?)?);
        }
    }
    vae.decode_images(&Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)?)
}

/// A 2-D latent's manifold: decoder means over a side × side grid of
/// standard-normal quantiles Φ⁻¹((i + ½)/side), first latent across.
pub fn manifold(vae: &Vae, side: usize) -> Result<Tensor> {
    let q: Vec<f64> = (0..side).map(|i| normal_quantile((i as f64 + 0.5) / side as f64)).collect();
    let mut z = Vec::with_capacity(2 * side * side);
    for &y in &q {
        for &x in &q {
            z.extend([x, -y]);
        }
    }
    vae.decode_images(&Tensor::from_f64(&z, &[side * side, 2], DType::F32, vae.store.device())?)
}

/// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error
/// below 1.2e-9), ample for placing a picture's grid.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
