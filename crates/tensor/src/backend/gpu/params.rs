//! The small per-dispatch argument block: a flat array of u32 words (floats
//! bit-cast), bound at binding 0 of every shader and read as `P[i]`.

use crate::Layout;

#[derive(Default, Debug)]
pub(crate) struct Params(Vec<u32>);

/// Largest rank the strided shaders walk (after merging dims).
pub(crate) const MAX_RANK: usize = 8;

impl Params {
    pub fn new() -> Self {
        Params(Vec::with_capacity(32))
    }

    pub fn u(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }

    pub fn f(mut self, v: f64) -> Self {
        self.0.push((v as f32).to_bits());
        self
    }

    pub fn flag(self, v: bool) -> Self {
        self.u(v as usize)
    }

    /// `MAX_RANK` words, padded with `pad`.
    pub fn dims(mut self, v: &[usize], pad: usize) -> Self {
        for i in 0..MAX_RANK {
            self.0.push(v.get(i).copied().unwrap_or(pad) as u32);
        }
        self
    }

    pub fn words(&self) -> &[u32] {
        &self.0
    }

    pub fn bytes(&self) -> &[u8] {
        if self.0.is_empty() { &[0; 4] } else { bytemuck::cast_slice(&self.0) }
    }
}

/// Merges adjacent dims that every layout walks as one (and drops size-1
/// dims), so a strided kernel does fewer div/mods and any rank fits.
/// All layouts must share `shape`; returns (shape, strides per layout).
pub(crate) fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = vec![];
    let mut out_strides: Vec<Vec<usize>> = vec![vec![]; strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| *o.last().unwrap() == s[d] * shape[d]);
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// The contiguous strides of `l`'s shape (the output side of a dense write).
pub(crate) fn dense_strides(l: &Layout) -> Vec<usize> {
    crate::layout::contiguous_strides(l.shape())
}
