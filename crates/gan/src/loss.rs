//! The GAN objectives kiln trains with, on D's raw outputs (logits for
//! BCE, scores otherwise), each a mean over the batch:
//!
//! | loss | D minimises | G minimises |
//! |---|---|---|
//! | bce (non-saturating) | BCE(D(x), r) + BCE(D(G(z)), 0) | BCE(D(G(z)), 1) |
//! | lsgan (Mao et al.) | ½(D(x) − 1)² + ½ D(G(z))² | ½(D(G(z)) − 1)² |
//! | hinge (Lim & Ye; SN-GAN, SAGAN) | relu(1 − D(x)) + relu(1 + D(G(z))) | −D(G(z)) |
//! | wgan-gp (Gulrajani et al.) | D(G(z)) − D(x) + λ GP | −D(G(z)) |
//!
//! The penalties differentiate D's input gradient, so they need kiln's
//! double backward through every op of D.

use kiln_tensor::loss::{Reduction, binary_cross_entropy_with_logits};
use kiln_tensor::{GradOptions, Result, Tensor, Var, grad};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    Bce,
    Lsgan,
    Hinge,
    WganGp,
}

/// D's loss from its outputs on real and generated images (1-D, one per
/// image); `real_label` is BCE's target for real images (0.9: one-sided smoothing).
pub fn d_loss(kind: GanLoss, real: &Tensor, fake: &Tensor, real_label: f64) -> Result<Tensor> {
    match kind {
        GanLoss::Bce => {
            let target = |v: f64, like: &Tensor| like.full_like(v);
            let r = binary_cross_entropy_with_logits(real, &target(real_label, real)?, None, None, Reduction::Mean)?;
            r.add(&binary_cross_entropy_with_logits(fake, &target(0.0, fake)?, None, None, Reduction::Mean)?)
        }
        GanLoss::Lsgan => real.add_scalar(-1.0)?.sqr()?.mean_all()?.add(&fake.sqr()?.mean_all()?)?.mul_scalar(0.5),
        GanLoss::Hinge => real.affine(-1.0, 1.0)?.relu()?.mean_all()?.add(&fake.add_scalar(1.0)?.relu()?.mean_all()?),
        GanLoss::WganGp => fake.mean_all()?.sub(&real.mean_all()?),
    }
}

/// G's loss from D's outputs on generated images.
pub fn g_loss(kind: GanLoss, fake: &Tensor) -> Result<Tensor> {
    match kind {
        GanLoss::Bce => binary_cross_entropy_with_logits(fake, &fake.ones_like()?, None, None, Reduction::Mean),
        GanLoss::Lsgan => fake.add_scalar(-1.0)?.sqr()?.mean_all()?.mul_scalar(0.5),
        GanLoss::Hinge | GanLoss::WganGp => fake.mean_all()?.neg(),
    }
}

/// ‖∇ₓ D(x)‖² per image over every non-batch dim, kept differentiable
/// (double backward) w.r.t. D's weights. `d` maps images to one output each.
fn input_grad_sq_norm(d: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    let x = Var::new(&x.detach())?;
    let out = d(&x)?.sum_all()?;
    // Only ∇ₓ: torch.autograd.grad's pruned backward skips D's weight gradients.
    let opts = GradOptions { create_graph: true, allow_unused: true, ..Default::default() };
    // A D that ignores its input has a zero gradient (built only then).
    let g = match grad(&[&out], &[&x], None, opts)?.pop().flatten() {
        Some(g) => g,
        None => x.zeros_like()?,
    };
    let dims: Vec<usize> = (1..g.rank()).collect();
    g.sqr()?.sum(&dims, false)
}

/// WGAN-GP's penalty λ · mean_i (‖∇ D(x̂_i)‖₂ − 1)² on x̂ = x + α(x̃ − x),
/// `alpha` (n, 1, …, 1) one draw per image, the norm over all non-batch dims
/// (not over channels only, a common bug). √(s + 1e-12) keeps the
/// gradient finite where ∇D is exactly 0.
pub fn gradient_penalty(
    d: &dyn Fn(&Tensor) -> Result<Tensor>,
    real: &Tensor,
    fake: &Tensor,
    alpha: &Tensor,
    lambda: f64,
) -> Result<Tensor> {
    let (real, fake) = (real.detach(), fake.detach());
    let x_hat = real.add(&fake.sub(&real)?.mul(alpha)?)?;
    let norm = input_grad_sq_norm(d, &x_hat)?.add_scalar(1e-12)?.sqrt()?;
    norm.add_scalar(-1.0)?.sqr()?.mean_all()?.mul_scalar(lambda)
}

/// R1 (Mescheder et al. 2018): γ/2 · mean_i ‖∇ₓ D(x_i)‖² on real images.
pub fn r1_penalty(d: &dyn Fn(&Tensor) -> Result<Tensor>, real: &Tensor, gamma: f64) -> Result<Tensor> {
    input_grad_sq_norm(d, real)?.mean_all()?.mul_scalar(gamma / 2.0)
}
