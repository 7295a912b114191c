//! The Fréchet distance between two Gaussians fitted to features
//! (Heusel et al. 2017), all in f64:
//!
//!   FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½
//!
//! tr (Σ₁Σ₂)^½ is computed as tr (√Σ₁ Σ₂ √Σ₁)^½: the same eigenvalues, but
//! of a symmetric positive semi-definite matrix, so a symmetric
//! eigendecomposition gives them exactly (scipy's `sqrtm` on the
//! non-symmetric product can return complex noise instead).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::{EvalError, Result};

/// Mean and covariance (unbiased, as numpy.cov) of n feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub n: usize,
    pub mean: Vec<f64>,
    /// Row-major d × d.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of `n` rows of `d` features.
    pub fn of(features: &[f32], n: usize, d: usize) -> Result<Self> {
        if n < 2 || d == 0 || features.len() != n * d {
            return Err(EvalError::Argument {
                op: "feature_stats",
                msg: format!("needs at least 2 rows of {d} features, got {} values for {n} rows", features.len()),
            });
        }
        let mut mean = vec![0.0; d];
        for row in features.chunks(d) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred: Vec<f64> =
            features.chunks(d).flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m)).collect();
        let x = DMatrix::from_row_slice(n, d, &centred);
        let cov = (x.transpose() * &x) / (n - 1) as f64;
        Ok(FeatureStats { n, mean, cov: row_major(&cov) })
    }

    /// From stored parts (checked for shape and finiteness).
    pub fn from_parts(n: usize, mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let d = mean.len();
        if cov.len() != d * d || !mean.iter().chain(&cov).all(|v| v.is_finite()) {
            return Err(EvalError::Argument {
                op: "feature_stats",
                msg: format!("a mean of {d} needs a finite {d}×{d} covariance, got {} values", cov.len()),
            });
        }
        Ok(FeatureStats { n, mean, cov })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    fn cov_matrix(&self) -> DMatrix<f64> {
        DMatrix::from_row_slice(self.dim(), self.dim(), &self.cov)
    }
}

fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}

/// Eigenvalues of a symmetric matrix below this fraction of the largest
/// (in magnitude) are rounding noise of a PSD matrix and count as zero;
/// a more negative one means the input was not PSD.
const NEGATIVE_TOLERANCE: f64 = 1e-8;

fn psd_eigen(m: &DMatrix<f64>, op: &'static str) -> Result<SymmetricEigen<f64, nalgebra::Dyn>> {
    let sym = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let scale = eig.eigenvalues.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if let Some(v) = eig.eigenvalues.iter().find(|&&v| v < -NEGATIVE_TOLERANCE * scale.max(f64::MIN_POSITIVE)) {
        return Err(EvalError::Argument {
            op,
            msg: format!("the matrix is not positive semi-definite (eigenvalue {v})"),
        });
    }
    Ok(eig)
}

/// The symmetric PSD square root of a symmetric PSD matrix (row-major d × d).
pub fn sqrt_psd(m: &[f64], d: usize) -> Result<Vec<f64>> {
    if m.len() != d * d {
        return Err(EvalError::Argument { op: "sqrt_psd", msg: format!("{} values are not {d}×{d}", m.len()) });
    }
    Ok(row_major(&sqrt_matrix(&DMatrix::from_row_slice(d, d, m))?))
}

fn sqrt_matrix(m: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    let eig = psd_eigen(m, "sqrt_psd")?;
    let root = DVector::from_iterator(eig.eigenvalues.len(), eig.eigenvalues.iter().map(|v| v.max(0.0).sqrt()));
    Ok(&eig.eigenvectors * DMatrix::from_diagonal(&root) * eig.eigenvectors.transpose())
}

/// FID between two feature distributions of the same width.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim() != b.dim() {
        return Err(EvalError::Argument {
            op: "frechet_distance",
            msg: format!("features of width {} and {} cannot be compared", a.dim(), b.dim()),
        });
    }
    let (s1, s2) = (a.cov_matrix(), b.cov_matrix());
    let mean: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let r1 = sqrt_matrix(&s1)?;
    let inner = psd_eigen(&(&r1 * &s2 * &r1), "frechet_distance")?;
    let cross: f64 = inner.eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    // Rounding can leave −1e-12 for identical statistics; the distance is ≥ 0.
    Ok((mean + s1.trace() + s2.trace() - 2.0 * cross).max(0.0))
}
