//! The public op API, one file per op family: argument checks with typed
//! errors, the forward (a `Storage` primitive or a composition), and the
//! gradient rule.

pub mod adam;
pub mod attention;
pub mod batch_norm;
pub mod conv2d;
pub mod elementwise;
pub mod index;
pub mod linalg;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod softmax;

/// Runs a gradient rule only for an input that wants its gradient
/// (`needs[i]`, see `Op::backward`).
pub(crate) fn wanted(
    needs: &[bool],
    i: usize,
    grad: impl FnOnce() -> crate::Result<crate::Tensor>,
) -> crate::Result<Option<crate::Tensor>> {
    if needs.get(i).copied().unwrap_or(true) { grad().map(Some) } else { Ok(None) }
}
