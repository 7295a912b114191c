//! Helpers shared by the test modules.

use kiln::tensor::testing::{GradcheckError, gradcheck, gradgradcheck};
use kiln::{DType, Device, Tensor};
use proptest::test_runner::TestCaseError;

pub fn t64(data: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_f64(data, shape, DType::F64, Device::Cpu).unwrap()
}

/// Values drawn from N(0, 1), shifted away from zero by `away`: keeps
/// finite differences off kinks (relu, abs, clamp) and domains positive.
pub fn randn_away(shape: &[usize], seed: u64, away: f64) -> Tensor {
    let x = kiln::tensor::testing::strategies::randn(shape, seed).to_vec_f64();
    let v: Vec<f64> = x.iter().map(|&v| v + away * v.signum()).collect();
    t64(&v, shape)
}

pub fn positive(shape: &[usize], seed: u64) -> Tensor {
    let x = kiln::tensor::testing::strategies::randn(shape, seed).to_vec_f64();
    let v: Vec<f64> = x.iter().map(|&v| v.abs() + 0.3).collect();
    t64(&v, shape)
}

fn to_case(r: Result<(), GradcheckError>) -> Result<(), TestCaseError> {
    r.map_err(|e| TestCaseError::fail(e.to_string()))
}

/// gradcheck as a proptest assertion.
pub fn check<F>(f: F, inputs: &[Tensor]) -> Result<(), TestCaseError>
where
    F: Fn(&[Tensor]) -> kiln::Result<Tensor>,
{
    to_case(gradcheck(f, inputs))
}

/// gradcheck and gradgradcheck as one proptest assertion.
pub fn check2<F>(f: F, inputs: &[Tensor]) -> Result<(), TestCaseError>
where
    F: Fn(&[Tensor]) -> kiln::Result<Tensor>,
{
    to_case(gradcheck(&f, inputs))?;
    to_case(gradgradcheck(&f, inputs))
}

pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (diff {:e})",
            (g - w).abs()
        );
    }
}

/// An empty directory for one test under cargo's `target/tmp` (not /tmp):
/// the next run reuses the name, so nothing piles up, and `cargo clean`
/// removes it all. Names must be unique across the test binary.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
