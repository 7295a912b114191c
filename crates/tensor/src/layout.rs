//! Shape + strides + offset: how a flat buffer is seen as an n-d tensor.
//! Views (permute, narrow, broadcast) only change the layout, never the data.

use crate::error::{Result, shape_err};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The shape two operands broadcast to (NumPy / PyTorch rules).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(shape_err(
                    op,
                    format!("shapes {a:?} and {b:?} cannot be broadcast together (dim {i}: {da} vs {db})"),
                ));
            }
        };
    }
    Ok(out)
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Self {
        Self::contiguous_with_offset(shape, 0)
    }

    pub fn contiguous_with_offset(shape: &[usize], offset: usize) -> Self {
        Layout { strides: contiguous_strides(shape), shape: shape.to_vec(), offset }
    }

    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout { shape, strides, offset }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Row-major contiguous (any offset): the data is one dense slice.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The dense slice range when contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous().then(|| self.offset..self.offset + self.numel())
    }

    /// Number of storage elements this layout can touch (for bounds checks).
    pub fn span(&self) -> usize {
        if self.numel() == 0 {
            return self.offset;
        }
        self.offset + 1 + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>()
    }

    pub(crate) fn permute(&self, dims: &[usize]) -> Layout {
        Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    pub(crate) fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[dim];
        l.shape[dim] = len;
        l
    }

    /// View with `shape`, broadcasting size-1 (or missing leading) dims with stride 0.
    pub(crate) fn broadcast_as(&self, op: &'static str, shape: &[usize]) -> Result<Layout> {
        if shape.len() < self.rank() {
            return Err(shape_err(op, format!("cannot broadcast {:?} to fewer dims {shape:?}", self.shape)));
        }
        let extra = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &target) in shape.iter().enumerate().skip(extra) {
            let (d, s) = (self.shape[i - extra], self.strides[i - extra]);
            strides[i] = if d == target {
                s
            } else if d == 1 {
                0
            } else {
                return Err(shape_err(op, format!("cannot broadcast {:?} to {shape:?}", self.shape)));
            };
        }
        Ok(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// Storage offset of the element at row-major linear index `i`.
    pub(crate) fn offset_of(&self, mut i: usize) -> usize {
        let mut off = self.offset;
        if self.shape.contains(&0) {
            return off;
        }
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            off += (i % d) * s;
            i /= d;
        }
        off
    }
}

/// Iterates storage offsets of a layout in row-major order, starting at any
/// linear index (so rayon chunks can each start their own iterator).
pub struct StridedOffsets<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl<'a> StridedOffsets<'a> {
    pub fn new_at(layout: &'a Layout, start: usize, count: usize) -> Self {
        let mut index = vec![0; layout.rank()];
        let mut rest = start;
        for (slot, &d) in index.iter_mut().zip(layout.shape()).rev() {
            *slot = rest % d.max(1);
            rest /= d.max(1);
        }
        let next = layout.offset_of(start);
        StridedOffsets { layout, index, next, remaining: count }
    }
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let cur = self.next;
        let shape = self.layout.shape();
        let strides = self.layout.strides();
        for d in (0..shape.len()).rev() {
            self.index[d] += 1;
            self.next += strides[d];
            if self.index[d] < shape[d] {
                return Some(cur);
            }
            self.next -= strides[d] * shape[d];
            self.index[d] = 0;
        }
        Some(cur)
    }
}
