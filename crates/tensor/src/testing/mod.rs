//! Gradient checking as a feature: `gradcheck` and `gradgradcheck` compare
//! analytic gradients with central finite differences in f64, and
//! `strategies` draws valid shapes and op parameters for proptest, so users
//! can property-test their own ops the way kiln tests its own.
//!
//! Like torch.autograd.gradcheck's fast mode, the check projects the output
//! on a fixed random vector v and compares ∇⟨f(x), v⟩ element by element
//! with (⟨f(x + εeᵢ), v⟩ − ⟨f(x − εeᵢ), v⟩) / 2ε. A wrong Jacobian entry
//! escapes only if v is orthogonal to the error, which a random v is not.

use crate::{DType, Error, Rng, Tensor, Var};

pub mod strategies;

/// Tolerances; the defaults are torch.autograd.gradcheck's.
#[derive(Debug, Clone, Copy)]
pub struct GradcheckOptions {
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Seeds the projection vectors.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-3, seed: 0 }
    }
}

/// Why a check failed: an error from the function, or a mismatch report
/// naming the input, the worst element, and both values.
#[derive(Debug, Clone, PartialEq)]
pub enum GradcheckError {
    Op(Error),
    Mismatch { input: usize, shape: Vec<usize>, index: Vec<usize>, analytic: f64, numeric: f64, atol: f64, rtol: f64 },
}

impl std::fmt::Display for GradcheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradcheckError::Op(e) => write!(f, "gradcheck: the function failed: {e}"),
            GradcheckError::Mismatch { input, shape, index, analytic, numeric, atol, rtol } => write!(
                f,
                "gradcheck: input {input} (shape {shape:?}), element {index:?}: analytic {analytic:.10e} vs numeric {numeric:.10e} \
                 (|diff| {:.3e} > atol {atol:e} + rtol {rtol:e}·|numeric|)",
                (analytic - numeric).abs()
            ),
        }
    }
}

impl std::error::Error for GradcheckError {}

impl From<Error> for GradcheckError {
    fn from(e: Error) -> Self {
        GradcheckError::Op(e)
    }
}

type CheckResult = std::result::Result<(), GradcheckError>;

/// Checks the gradient of `f` with respect to every f64 input (other
/// dtypes, e.g. i64 indices, are passed through unchecked).
pub fn gradcheck<F>(f: F, inputs: &[Tensor]) -> CheckResult
where
    F: Fn(&[Tensor]) -> crate::Result<Tensor>,
{
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// Checks second derivatives: the gradient of ⟨∇⟨f(x), v⟩, u⟩ (computed
/// with `backward_create_graph`) against finite differences of the first
/// gradient.
pub fn gradgradcheck<F>(f: F, inputs: &[Tensor]) -> CheckResult
where
    F: Fn(&[Tensor]) -> crate::Result<Tensor>,
{
    gradgradcheck_with(f, inputs, GradcheckOptions::default())
}

fn random_like(t: &Tensor, rng: &mut Rng) -> crate::Result<Tensor> {
    Tensor::randn(t.shape(), 0.0, 1.0, DType::F64, t.device(), rng)
}

/// Fresh leaves for the f64 inputs, so every call builds its own graph.
fn leaves(inputs: &[Tensor]) -> crate::Result<Vec<Tensor>> {
    inputs
        .iter()
        .map(|t| if t.dtype() == DType::F64 { Ok(Var::new(t)?.as_tensor().clone()) } else { Ok(t.clone()) })
        .collect()
}

pub fn gradcheck_with<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> CheckResult
where
    F: Fn(&[Tensor]) -> crate::Result<Tensor>,
{
    if let Some(t) = inputs.iter().find(|t| t.dtype().is_float() && t.dtype() != DType::F64) {
        return Err(GradcheckError::Op(Error::Argument {
            op: "gradcheck",
            msg: format!("inputs must be f64, got {:?}", t.dtype()),
        }));
    }
    let mut rng = Rng::new(opts.seed);
    let vars = leaves(inputs)?;
    let out = f(&vars)?;
    let v = random_like(&out, &mut rng)?;
    let projected = |xs: &[Tensor]| -> crate::Result<f64> { f(xs)?.mul(&v)?.sum_all()?.to_scalar() };
    let s = out.mul(&v)?.sum_all()?;
    let grads = if s.tracks_grad() { Some(s.backward()?) } else { None };
    for (i, x) in inputs.iter().enumerate() {
        if x.dtype() != DType::F64 {
            continue;
        }
        let analytic = match grads.as_ref().and_then(|g| g.get(&vars[i])) {
            Some(g) => g.to_vec_f64(),
            None => vec![0.0; x.numel()],
        };
        let base = x.to_vec_f64();
        let mut worst: Option<(f64, usize, f64)> = None;
        for j in 0..base.len() {
            let eval = |delta: f64| -> crate::Result<f64> {
                let mut p = base.clone();
                p[j] += delta;
                let mut xs = vars.clone();
                xs[i] = Var::new(&Tensor::from_f64(&p, x.shape(), DType::F64, x.device())?)?.as_tensor().clone();
                projected(&xs)
            };
            let numeric = (eval(opts.eps)? - eval(-opts.eps)?) / (2.0 * opts.eps);
            let excess = (analytic[j] - numeric).abs() - (opts.atol + opts.rtol * numeric.abs());
            if excess > 0.0 && worst.is_none_or(|(w, ..)| excess > w) || analytic[j].is_nan() != numeric.is_nan() {
                worst = Some((excess, j, numeric));
            }
        }
        if let Some((_, j, numeric)) = worst {
            let mut index = vec![0; x.rank()];
            let mut rest = j;
            for d in (0..x.rank()).rev() {
                index[d] = rest % x.shape()[d];
                rest /= x.shape()[d];
            }
            return Err(GradcheckError::Mismatch {
                input: i,
                shape: x.shape().to_vec(),
                index,
                analytic: analytic[j],
                numeric,
                atol: opts.atol,
                rtol: opts.rtol,
            });
        }
    }
    Ok(())
}

pub fn gradgradcheck_with<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> CheckResult
where
    F: Fn(&[Tensor]) -> crate::Result<Tensor>,
{
    let mut rng = Rng::new(opts.seed ^ 0x5eed);
    let probe = f(&leaves(inputs)?)?;
    let v = random_like(&probe, &mut rng)?;
    let us = inputs.iter().map(|x| random_like(x, &mut rng)).collect::<crate::Result<Vec<_>>>()?;
    // ⟨∇ₓ⟨f(x), v⟩, u⟩ as a differentiable function of x.
    let first_order = |xs: &[Tensor]| -> crate::Result<Tensor> {
        let s = f(xs)?.mul(&v)?.sum_all()?;
        let mut total = Tensor::zeros(&[], DType::F64, s.device())?;
        if !s.tracks_grad() {
            return Ok(total);
        }
        let grads = s.backward_create_graph()?;
        for (x, u) in xs.iter().zip(&us) {
            if let Some(g) = grads.get(x).filter(|_| x.dtype() == DType::F64) {
                total = total.add(&g.mul(u)?.sum_all()?)?;
            }
        }
        Ok(total)
    };
    gradcheck_with(first_order, inputs, opts)
}
