//! Small dense matrices on the host in f64, row-major n × n: LU with
//! partial pivoting, the inverse and log|det| behind `Tensor::inverse` and
//! `Tensor::slogdet` (every backend runs them here: the matrices are a few
//! dozen wide, where a device round trip costs less than a kernel's
//! launch chain), and random rotations for initialisers.

use crate::{Error, Result, Rng};

fn singular(op: &'static str, n: usize) -> Error {
    Error::Argument { op, msg: format!("the {n}×{n} matrix is singular to f64 precision") }
}

/// LU with partial pivoting: (perm, lu) with A[perm[i]] = (L U)[i], L unit
/// lower and U upper packed in `lu`.
pub fn lu(a: &[f64], n: usize) -> Result<(Vec<usize>, Vec<f64>)> {
    let mut m = a.to_vec();
    let mut perm: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let p = (k..n).max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs())).unwrap_or(k);
        if m[p * n + k] == 0.0 {
            return Err(singular("lu", n));
        }
        if p != k {
            for j in 0..n {
                m.swap(k * n + j, p * n + j);
            }
            perm.swap(k, p);
        }
        for i in k + 1..n {
            let f = m[i * n + k] / m[k * n + k];
            m[i * n + k] = f;
            for j in k + 1..n {
                m[i * n + j] -= f * m[k * n + j];
            }
        }
    }
    Ok((perm, m))
}

/// (sign, log|det A|); (0, −∞) for a singular matrix, as torch.linalg.slogdet.
pub fn slogdet(a: &[f64], n: usize) -> (f64, f64) {
    let Ok((perm, m)) = lu(a, n) else { return (0.0, f64::NEG_INFINITY) };
    // The permutation's parity: each cycle of length L is L − 1 swaps.
    let mut seen = vec![false; n];
    let mut sign = 1.0;
    for start in 0..n {
        let mut len = 0;
        let mut i = start;
        while !seen[i] {
            seen[i] = true;
            i = perm[i];
            len += 1;
        }
        if len > 0 && len % 2 == 0 {
            sign = -sign;
        }
    }
    let mut log = 0.0;
    for i in 0..n {
        let d = m[i * n + i];
        sign *= d.signum();
        log += d.abs().ln();
    }
    (sign, log)
}

/// A⁻¹ by solving A X = I column by column from the LU factors.
pub fn inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let (perm, m) = lu(a, n)?;
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        // P A = L U, so solve L U x = P e_col.
        let mut x: Vec<f64> = (0..n).map(|i| if perm[i] == col { 1.0 } else { 0.0 }).collect();
        for i in 0..n {
            x[i] -= (0..i).map(|j| m[i * n + j] * x[j]).sum::<f64>();
        }
        for i in (0..n).rev() {
            x[i] = (x[i] - (i + 1..n).map(|j| m[i * n + j] * x[j]).sum::<f64>()) / m[i * n + i];
        }
        for i in 0..n {
            inv[i * n + col] = x[i];
        }
    }
    Ok(inv)
}

/// A random rotation: Gram–Schmidt on a Gaussian matrix (Glow's
/// initialisation of the 1×1 convolution, so log|det W| starts at 0).
pub fn random_orthogonal(n: usize, rng: &mut Rng) -> Result<Vec<f64>> {
    let mut q: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for i in 0..n {
        for j in 0..i {
            let d: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
            for k in 0..n {
                q[i * n + k] -= d * q[j * n + k];
            }
        }
        let norm = (0..n).map(|k| q[i * n + k].powi(2)).sum::<f64>().sqrt();
        if norm < 1e-12 {
            return Err(singular("random_orthogonal", n));
        }
        (0..n).for_each(|k| q[i * n + k] /= norm);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C = A B for n × n matrices.
    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn inverse_and_log_det_of_a_known_matrix() {
        // Cofactors along the first row; the first pivot is 0, so LU must swap rows.
        let a = [0.0, 1.0, 2.0, 2.0, 1.0, 0.0, 1.0, 0.0, 3.0];
        let det: f64 = 0.0 * (3.0 - 0.0) - 1.0 * (6.0 - 0.0) + 2.0 * (0.0 - 1.0);
        assert!((slogdet(&a, 3).1 - det.abs().ln()).abs() < 1e-12);
        let id = matmul(&a, &inverse(&a, 3).unwrap(), 3);
        for i in 0..3 {
            for j in 0..3 {
                assert!((id[i * 3 + j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(inverse(&[1.0, 2.0, 2.0, 4.0], 2).is_err());
        assert_eq!(slogdet(&[1.0, 2.0, 2.0, 4.0], 2), (0.0, f64::NEG_INFINITY));
        let (sign, log) = slogdet(&a, 3);
        assert_eq!(sign, -1.0);
        assert!((log - det.abs().ln()).abs() < 1e-12 && det < 0.0);
        // A permutation with one swap has det −1.
        assert_eq!(slogdet(&[0.0, 1.0, 1.0, 0.0], 2), (-1.0, 0.0));
    }

    #[test]
    fn random_orthogonal_is_orthogonal() {
        let q = random_orthogonal(5, &mut Rng::new(3)).unwrap();
        let qt: Vec<f64> = (0..25).map(|i| q[(i % 5) * 5 + i / 5]).collect();
        let id = matmul(&q, &qt, 5);
        for i in 0..5 {
            for j in 0..5 {
                assert!((id[i * 5 + j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(slogdet(&q, 5).1.abs() < 1e-12);
    }
}
