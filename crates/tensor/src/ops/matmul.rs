//! Batched matmul with broadcasting batch dims (torch.matmul for rank ≥ 2).

use crate::Tensor;
use crate::error::{Result, shape_err};
use crate::layout::broadcast_shapes;
use crate::op::Op;
use crate::ops::elementwise::check_same;
use crate::ops::wanted;

impl Tensor {
    /// (…, m, k) @ (…, k, n) → (…, m, n); batch dims broadcast. Both
    /// operands need rank ≥ 2 (unsqueeze vectors first).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same("matmul", self, rhs)?;
        let (a, b) = (self.shape(), rhs.shape());
        if a.len() < 2 || b.len() < 2 {
            return Err(shape_err("matmul", format!("operands need rank >= 2, got {a:?} and {b:?}")));
        }
        let (m, k, k2, n) = (a[a.len() - 2], a[a.len() - 1], b[b.len() - 2], b[b.len() - 1]);
        if k != k2 {
            return Err(shape_err("matmul", format!("inner dimensions differ: {a:?} @ {b:?} ({k} vs {k2})")));
        }
        let batch = broadcast_shapes("matmul", &a[..a.len() - 2], &b[..b.len() - 2])?;
        let full = |mut s: Vec<usize>, r: usize, c: usize| {
            s.extend_from_slice(&[r, c]);
            s
        };
        let la = self.layout().broadcast_as("matmul", &full(batch.clone(), m, k))?;
        let lb = rhs.layout().broadcast_as("matmul", &full(batch.clone(), k, n))?;
        let s = self.storage().matmul(&la, &rhs.storage(), &lb)?;
        Ok(Tensor::from_op(s, &full(batch, m, n), || Op::Matmul(self.clone(), rhs.clone())))
    }
}

pub(crate) fn matmul_backward(a: &Tensor, b: &Tensor, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let ga = wanted(needs, 0, || g.matmul(&b.t()?)?.sum_to_shape(a.shape()))?;
    let gb = wanted(needs, 1, || a.t()?.matmul(g)?.sum_to_shape(b.shape()))?;
    Ok(vec![ga, gb])
}
