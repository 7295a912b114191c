//! conv2d's column matrix packed straight from the input (f32, AVX-512,
//! stride_w ≤ 2): the GEMM asks for kc×48 blocks of B, and each block row
//! is gathered from the images, up to 16 columns per masked two-source
//! permute. No im2col buffer is written, read back and copied into the
//! GEMM's panels (that round trip was ~30% of a stride-2 layer's forward).

use std::arch::x86_64::*;

use super::conv2d::stride2::first;
use super::sgemm::{PANEL, PackB};
use crate::ops::conv2d::ConvGeom;

/// Where column-matrix row (c, i, j) reads: output (oy, ox) takes input
/// (oy·sh + iy0, ox·sw + ix0) of plane `plane`, for ox in [lo, hi) (the
/// rest of the row is padding).
#[derive(Clone, Copy)]
pub struct Tap {
    plane: usize,
    iy0: isize,
    ix0: isize,
    lo: usize,
    hi: usize,
}

/// Brings `x` into L2 ahead of the packs: they read each input row a few
/// times, in an order the hardware prefetchers do not follow, and their
/// input loads were the packs' hottest instructions (on the 64→128 layer
/// this pass measured 0–4% faster, within the noise of that machine).
pub fn prefetch(x: &[f32]) {
    for line in x.chunks(16) {
        // SAFETY: a prefetch of a valid address has no effect on memory.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
}

/// One `Tap` per column-matrix row of a group (Cg·kh·kw).
pub fn taps(g: &ConvGeom) -> Vec<Tap> {
    let ([ph, pw], [dh, dw], sw) = (g.p.padding, g.p.dilation, g.p.stride[1]);
    let (cg, hw) = (g.c / g.p.groups, g.h * g.w);
    let mut out = Vec::with_capacity(cg * g.kh * g.kw);
    for c in 0..cg {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let shift = j * dw;
                // ix = ox·sw + shift − pw must lie in [0, w).
                let lo = if pw > shift { (pw - shift).div_ceil(sw) } else { 0 }.min(g.ow);
                let hi = if g.w + pw > shift { (g.w + pw - shift - 1) / sw + 1 } else { 0 }.min(g.ow);
                let (iy0, ix0) = ((i * dh) as isize - ph as isize, shift as isize - pw as isize);
                out.push(Tap { plane: c * hw, iy0, ix0, lo, hi: hi.max(lo) });
            }
        }
    }
    out
}

/// A run of one output row inside a panel: image offset, oy·sh, first
/// output column and length.
#[derive(Clone, Copy, Default)]
struct Piece {
    image: usize,
    oy_sh: isize,
    ox0: usize,
    len: usize,
}

/// Up to 16 consecutive panel columns filled by one permute: one piece
/// (≤ 16 outputs, its two source vectors both from its input row), or two
/// of ≤ 8 (one source vector each) when output rows are that short.
#[derive(Clone, Copy, Default)]
struct Group {
    col: usize,
    pieces: [Piece; 2],
    two: bool,
}

/// The column matrix of images `x` (from the group's first plane of the
/// block's first image) as a `PackB` operand: column image·oh·ow + oy·ow + ox.
pub struct Gather<'a> {
    pub x: &'a [f32],
    pub taps: &'a [Tap],
    pub g: &'a ConvGeom,
}

impl Gather<'_> {
    /// The panel's columns j0..j0+nr split into groups; returns the count.
    fn groups(&self, j0: usize, nr: usize, out: &mut [Group; PANEL]) -> usize {
        let g = self.g;
        let (ow, oc, chw, sh) = (g.ow, g.oh * g.ow, g.c * g.h * g.w, g.p.stride[0]);
        let (mut q, mut n) = (j0, 0usize);
        while q < j0 + nr {
            let (img, rem) = (q / oc, q % oc);
            let (oy, ox0) = (rem / ow, rem % ow);
            let len = (ow - ox0).min(16).min(j0 + nr - q);
            let piece = Piece { image: img * chw, oy_sh: (oy * sh) as isize, ox0, len };
            let prev = n.checked_sub(1).map(|i| out[i]);
            match prev {
                Some(p) if ow <= 8 && !p.two => {
                    out[n - 1].pieces[1] = piece;
                    out[n - 1].two = true;
                }
                _ => {
                    out[n] = Group { col: q - j0, pieces: [piece, Piece::default()], two: false };
                    n += 1;
                }
            }
            q += len;
        }
        n
    }
}

/// What a piece reads for one tap: the source pointer (its first in-bounds
/// input), how many inputs from there, the lanes it fills and the index
/// offset that maps lane l to input (l − lane_off)·sw. None when the
/// whole piece is padding.
struct Read {
    src: *const f32,
    need: usize,
    lanes: __mmask16,
    lane_off: usize,
}

impl Gather<'_> {
    #[inline(always)]
    fn read(&self, tap: &Tap, piece: &Piece, lane0: usize) -> Option<Read> {
        let (h, w, sw) = (self.g.h as isize, self.g.w, self.g.p.stride[1]);
        let iy = piece.oy_sh + tap.iy0;
        let (a, b) = (piece.ox0.max(tap.lo), (piece.ox0 + piece.len).min(tap.hi));
        if iy < 0 || iy >= h || a >= b {
            return None;
        }
        // a·sw + ix0 ≥ 0 and (b − 1)·sw + ix0 < w by the tap's [lo, hi).
        let start = ((piece.image + tap.plane + iy as usize * w + a * sw) as isize + tap.ix0) as usize;
        let need = (b - a - 1) * sw + 1;
        assert!(start + need <= self.x.len());
        let (l0, l1) = (lane0 + a - piece.ox0, lane0 + b - piece.ox0);
        // SAFETY: start + need ≤ x.len() (asserted).
        let src = unsafe { self.x.as_ptr().add(start) };
        Some(Read { src, need, lanes: first(l1) & !first(l0), lane_off: l0 })
    }
}

impl PackB for Gather<'_> {
    #[target_feature(enable = "avx512f")]
    unsafe fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, bp: *mut f32) {
        let (sw, w, h) = (self.g.p.stride[1], self.g.w, self.g.h);
        assert!(sw == 1 || sw == 2);
        let mut groups = [Group::default(); PANEL];
        let ng = self.groups(j0, nr, &mut groups);
        let step = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(sw as i32),
        );
        let taps = &self.taps[p0..p0 + kc];
        if nr < PANEL {
            for p in 0..kc {
                for v in nr / 16..PANEL / 16 {
                    // Zero the columns past nr (a partial vector is then overwritten by the groups).
                    // SAFETY: inside the panel (kc·PANEL floats, the caller's contract).
                    unsafe { _mm512_storeu_ps(bp.add(p * PANEL + 16 * v), _mm512_setzero_ps()) };
                }
            }
        }
        // Group by group, so each group's masks and permute indices for taps
        // that see its whole width (all but the padding edges) are worked out once.
        for grp in &groups[..ng] {
            let [a, b] = grp.pieces;
            let width = a.len + if grp.two { b.len } else { 0 };
            let need = |len: usize| (len - 1) * sw + 1;
            let (ma, mb) = if grp.two {
                (first(need(a.len)), first(need(b.len)))
            } else {
                (first(need(a.len)), first(need(a.len).saturating_sub(16)))
            };
            // Second piece: lanes a.len.., reading the second source (+16).
            let idx = if grp.two {
                let off = _mm512_set1_epi32(16 - (a.len * sw) as i32);
                _mm512_mask_add_epi32(step, first(width) & !first(a.len), step, off)
            } else {
                step
            };
            let last = self.x.len();
            for (p, tap) in taps.iter().enumerate() {
                // SAFETY: the panel holds kc·PANEL floats and col + width ≤ nr.
                let dst = unsafe { bp.add(p * PANEL + grp.col) };
                let covers = |pc: &Piece| tap.lo <= pc.ox0 && pc.ox0 + pc.len <= tap.hi;
                let iy = |pc: &Piece| pc.oy_sh + tap.iy0;
                let inside = |pc: &Piece| covers(pc) && (iy(pc) as usize) < h;
                let start = |pc: &Piece| {
                    ((pc.image + tap.plane + iy(pc) as usize * w + pc.ox0 * sw) as isize + tap.ix0) as usize
                };
                if inside(&a) && (!grp.two || inside(&b)) {
                    let (sa, sb) = (start(&a), if grp.two { start(&b) } else { start(&a) + 16 });
                    let (na, nb) = if grp.two { (need(a.len), need(b.len)) } else { (need(a.len), 0) };
                    assert!(sa + na <= last && (nb == 0 || sb + nb <= last));
                    // SAFETY: the masked loads read only the inputs just bounded.
                    unsafe {
                        let va = _mm512_maskz_loadu_ps(ma, self.x.as_ptr().add(sa));
                        let vb = _mm512_maskz_loadu_ps(mb, self.x.as_ptr().wrapping_add(sb));
                        _mm512_mask_storeu_ps(dst, first(width), _mm512_permutex2var_ps(va, idx, vb));
                    }
                    continue;
                }
                // A padding edge: the general form.
                let ra = self.read(tap, &a, 0);
                let rb = if grp.two { self.read(tap, &b, a.len) } else { None };
                // SAFETY: masked loads touch only the `need` inputs each Read
                // checked; the store stays in the panel row.
                unsafe {
                    let (mut va, mut vb) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    let (mut lanes, mut idx) = (0, step);
                    if let Some(r) = &ra {
                        va = _mm512_maskz_loadu_ps(first(r.need), r.src);
                        if !grp.two {
                            vb = _mm512_maskz_loadu_ps(first(r.need.saturating_sub(16)), r.src.wrapping_add(16));
                        }
                        lanes = r.lanes;
                        idx = _mm512_sub_epi32(step, _mm512_set1_epi32((r.lane_off * sw) as i32));
                    }
                    if let Some(r) = &rb {
                        vb = _mm512_maskz_loadu_ps(first(r.need), r.src);
                        lanes |= r.lanes;
                        let off = _mm512_set1_epi32(16 - (r.lane_off * sw) as i32);
                        idx = _mm512_mask_add_epi32(idx, r.lanes, step, off);
                    }
                    _mm512_mask_storeu_ps(dst, first(width), _mm512_maskz_permutex2var_ps(lanes, va, idx, vb));
                }
            }
        }
    }
}
