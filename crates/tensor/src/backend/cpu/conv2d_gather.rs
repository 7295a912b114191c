//! conv2d's column matrix packed straight from the input (f32, AVX-512,
//! stride_w ≤ 2): the GEMM asks for kc×48 blocks of B, and each block row
//! is gathered from the images, up to 16 columns per masked two-source
//! permute. No im2col buffer is written, read back and copied into the
//! GEMM's panels (that round trip was ~30% of a stride-2 layer's forward).

use std::arch::x86_64::*;

use super::conv2d::stride2::first;
use super::sgemm::{PANEL, PANEL_ROWS, PackA, PackB, transpose8x16};
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
    /// Kernel column: taps with the same j read the same columns of a row.
    j: usize,
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
                out.push(Tap { plane: c * hw, iy0, ix0, lo, hi: hi.max(lo), j });
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

/// The widest kernel the gathers take (per-column reads live in a fixed
/// array per group); wider ones, which no model here runs, use im2col.
pub const MAX_KW: usize = 8;

/// What a group reads from its input rows for taps of one kernel column
/// (the padding at a row's ends depends on the column only): per source
/// vector, the offset of its first input from the row start and its load
/// mask; the lanes each piece fills and the permute that places them.
#[derive(Clone, Copy)]
struct ColRead {
    off: [isize; 2],
    load: [__mmask16; 2],
    lanes: [__mmask16; 2],
    idx: __m512i,
}

impl Gather<'_> {
    /// Where piece `pc`'s input row for `tap` starts, and a load mask that
    /// keeps (all ones) or drops (a padding row: the start is then `x`'s) its reads.
    fn row_start(&self, pc: &Piece, tap: &Tap) -> (*const f32, __mmask16) {
        let iy = pc.oy_sh + tap.iy0;
        if iy >= 0 && (iy as usize) < self.g.h {
            (self.x.as_ptr().wrapping_add(pc.image + tap.plane + iy as usize * self.g.w), 0xffff)
        } else {
            (self.x.as_ptr(), 0)
        }
    }

    /// Lane l's input index, l·sw, before each column's offset.
    #[target_feature(enable = "avx512f")]
    fn lane_step(&self) -> __m512i {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm512_mullo_epi32(lanes, _mm512_set1_epi32(self.g.p.stride[1] as i32))
    }

    /// Piece `pc`'s reads for taps of kernel column `tap`, filling lanes
    /// from `lane0`: (offset of the first input from the row start, inputs
    /// spanned, lanes filled, first lane filled); no inputs when the piece
    /// sees only padding.
    fn piece_read(&self, pc: &Piece, lane0: usize, tap: &Tap) -> (isize, usize, __mmask16, usize) {
        let sw = self.g.p.stride[1];
        let (a, b) = (pc.ox0.max(tap.lo), (pc.ox0 + pc.len).min(tap.hi));
        if a >= b {
            return (0, 0, 0, 0);
        }
        let (l0, l1) = (lane0 + a - pc.ox0, lane0 + b - pc.ox0);
        // a·sw + ix0 ≥ 0 by the tap's lo, and the last input is < w by its hi.
        ((a * sw) as isize + tap.ix0, (b - a - 1) * sw + 1, first(l1) & !first(l0), l0)
    }

    /// Group `grp`'s reads for each kernel column j (taps[j], channel 0 and
    /// kernel row 0, stands for the column), and whether every column
    /// reads the same source vectors (the
    /// group's input window fits them: 32 inputs of its one row, or 16 of
    /// each of its two), so a kernel row needs its loads only once. A
    /// stride-2 4×4 kernel on rows of 16 or 8 outputs always fits.
    #[target_feature(enable = "avx512f")]
    fn group_reads(&self, grp: &Group, step: __m512i) -> ([ColRead; MAX_KW], bool) {
        let mut cols = [ColRead { off: [0; 2], load: [0; 2], lanes: [0; 2], idx: step }; MAX_KW];
        let sw = self.g.p.stride[1];
        let kw = self.g.kw;
        let [pa, pb] = grp.pieces;
        // Piece v of the group's sources (the second piece's lanes follow the first's).
        let mut reads = [[(0, 0, 0, 0); 2]; MAX_KW];
        for (j, r) in reads.iter_mut().enumerate().take(kw) {
            r[0] = self.piece_read(&pa, 0, &self.taps[j]);
            if grp.two {
                r[1] = self.piece_read(&pb, pa.len, &self.taps[j]);
            }
        }
        // The span [lo, hi) of inputs the columns read from each piece's row.
        let span = |v: usize| {
            let live = reads[..kw].iter().map(|r| r[v]).filter(|r| r.1 > 0);
            let lo = live.clone().map(|r| r.0).min().unwrap_or(0);
            (lo, live.map(|r| r.0 + r.1 as isize).max().unwrap_or(lo))
        };
        let spans = [span(0), span(1)];
        let cap = if grp.two { 16 } else { 32 };
        let shared = spans.iter().all(|(lo, hi)| hi - lo <= cap);
        for (c, reads) in cols.iter_mut().zip(&reads).take(kw) {
            // Where each source vector starts and how many inputs it loads.
            let (base, len) = if shared {
                (spans.map(|s| s.0), spans.map(|s| (s.1 - s.0) as usize))
            } else {
                (reads.map(|r| r.0), reads.map(|r| r.1))
            };
            // Lane l of piece v takes input (l − l0)·sw + (offset − base) of its source.
            let lane_idx = |v: usize| {
                let (off, _, _, l0) = reads[v];
                let from = if v == 1 && grp.two { 16 } else { 0 };
                _mm512_add_epi32(step, _mm512_set1_epi32(from + (off - base[v]) as i32 - (l0 * sw) as i32))
            };
            let (lanes, idx, off, load) = if grp.two {
                let idx = _mm512_mask_mov_epi32(lane_idx(0), reads[1].2, lane_idx(1));
                ([reads[0].2, reads[1].2], idx, base, [first(len[0]), first(len[1])])
            } else {
                // One row: the second source is the next 16 inputs of the same row.
                let load = [first(len[0]), first(len[0].saturating_sub(16))];
                ([reads[0].2, 0], lane_idx(0), [base[0], base[0] + 16], load)
            };
            *c = ColRead { off, load, lanes, idx };
        }
        (cols, shared)
    }
}

impl PackB for Gather<'_> {
    #[target_feature(enable = "avx512f")]
    unsafe fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, bp: *mut f32) {
        let (sw, w, h, kw) = (self.g.p.stride[1], self.g.w, self.g.h, self.g.kw);
        assert!((sw == 1 || sw == 2) && kw <= MAX_KW);
        let mut groups = [Group::default(); PANEL];
        let ng = self.groups(j0, nr, &mut groups);
        let step = self.lane_step();
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
        // Every row read below lies in some piece's image, within its cg planes.
        let last_image = groups[..ng].iter().map(|g| g.pieces[usize::from(g.two)].image).max().unwrap_or(0);
        assert!(last_image + (self.g.c / self.g.p.groups) * h * w <= self.x.len());
        // Group by group: each group's masks and permutes are worked out
        // once per kernel column and each input row's start once per kernel
        // row, so a tap costs two masked loads, a permute and a store (half
        // of a 4×4 kernel's taps touch the padding: working their reads out
        // per tap made the pack instruction-bound); where the group's window
        // allows, a kernel row's loads serve all its taps (64→128: −3%).
        // Group-major measured 3–5% faster than tap-major (whole panel rows
        // per tap) on the DCGAN layers.
        for grp in &groups[..ng] {
            let [a, b] = grp.pieces;
            let b = if grp.two { b } else { a };
            let width = first(a.len + if grp.two { b.len } else { 0 });
            let (cols, shared) = self.group_reads(grp, step);
            let mut p = 0;
            while p < kc {
                let tap = &taps[p];
                // This tap and the rest of its kernel row read the same input rows.
                let run = (kw - tap.j).min(kc - p);
                let ((ra, ka), (rb, kb)) = (self.row_start(&a, tap), self.row_start(&b, tap));
                // SAFETY: a load mask is non-empty only on an existing row
                // (asserted inside x above), where the column's reads lie in
                // [0, w) (`piece_read`, `group_reads`).
                let load = |c: &ColRead| unsafe {
                    (
                        _mm512_maskz_loadu_ps(c.load[0] & ka, ra.wrapping_offset(c.off[0])),
                        _mm512_maskz_loadu_ps(c.load[1] & kb, rb.wrapping_offset(c.off[1])),
                    )
                };
                let mut v = load(&cols[tap.j]);
                for (q, c) in cols[tap.j..tap.j + run].iter().enumerate() {
                    if !shared && q > 0 {
                        v = load(c);
                    }
                    // SAFETY: the store stays in the panel row (kc·PANEL floats, col + width ≤ nr).
                    unsafe {
                        let out = _mm512_maskz_permutex2var_ps((c.lanes[0] & ka) | (c.lanes[1] & kb), v.0, c.idx, v.1);
                        _mm512_mask_storeu_ps(bp.add((p + q) * PANEL + grp.col), width, out);
                    }
                }
                p += run;
            }
        }
    }
}

/// Rows `rows` of a group's column matrix (all its taps in `Gather`) over
/// the output positions of images `x`, as a `PackA` operand: the left side
/// of the weight gradient dW_gᵀ = cols · dY_gᵀ. Gathering 16 positions of
/// 8 taps and transposing them in registers replaces writing the column
/// rows out and packing their transpose as the GEMM's right operand.
pub struct GatherA<'a> {
    pub src: Gather<'a>,
    pub rows: std::ops::Range<usize>,
}

impl GatherA<'_> {
    /// Whether every 16 positions from a multiple of 16 are one group
    /// (whole output rows of 16k, or pairs of rows of 8 in one image).
    pub fn fits(g: &ConvGeom) -> bool {
        g.p.stride[1] <= 2 && g.kw <= MAX_KW && (g.ow.is_multiple_of(16) || (g.ow == 8 && g.oh.is_multiple_of(2)))
    }
}

impl PackA for GatherA<'_> {
    #[target_feature(enable = "avx512f")]
    unsafe fn pack(&self, m: usize, p0: usize, kc: usize, ap: *mut f32) {
        let src = &self.src;
        let (w, h, rows_per_panel) = (src.g.w, src.g.h, PANEL_ROWS);
        let taps = &src.taps[self.rows.clone()];
        assert!(Self::fits(src.g) && p0.is_multiple_of(16) && kc.is_multiple_of(16) && m <= taps.len());
        let step = src.lane_step();
        let x = src.x.as_ptr();
        let cg_planes = (src.g.c / src.g.p.groups) * h * w;
        for pp in (0..kc).step_by(16) {
            let mut groups = [Group::default(); PANEL];
            assert_eq!(src.groups(p0 + pp, 16, &mut groups), 1, "16 positions make one group (`fits`)");
            let grp = groups[0];
            // Every row read below lies in one of the group's images, within its cg planes.
            assert!(grp.pieces[usize::from(grp.two)].image + cg_planes <= src.x.len());
            let [a, b] = grp.pieces;
            let b = if grp.two { b } else { a };
            let (cols, shared) = src.group_reads(&grp, step);
            let (mut ra, mut rb) = ((x, 0), (x, 0));
            let (mut va, mut vb) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut panel = [_mm512_setzero_ps(); PANEL_ROWS];
            for (i, tap) in taps[..m].iter().enumerate() {
                let c = &cols[tap.j];
                let new_row = i == 0 || tap.j == 0;
                if new_row {
                    // A kernel row's taps read the same input rows.
                    (ra, rb) = (src.row_start(&a, tap), src.row_start(&b, tap));
                }
                if new_row || !shared {
                    // SAFETY: a load mask is non-empty only on an existing row
                    // (asserted inside x above), where the column's reads lie
                    // in [0, w) (`piece_read`, `group_reads`).
                    unsafe {
                        va = _mm512_maskz_loadu_ps(c.load[0] & ra.1, ra.0.wrapping_offset(c.off[0]));
                        vb = _mm512_maskz_loadu_ps(c.load[1] & rb.1, rb.0.wrapping_offset(c.off[1]));
                    }
                }
                let lanes = (c.lanes[0] & ra.1) | (c.lanes[1] & rb.1);
                panel[i % rows_per_panel] = _mm512_maskz_permutex2var_ps(lanes, va, c.idx, vb);
                if i % rows_per_panel == rows_per_panel - 1 || i + 1 == m {
                    panel[i % rows_per_panel + 1..].fill(_mm512_setzero_ps());
                    let base = (i / rows_per_panel) * rows_per_panel * kc + pp * rows_per_panel;
                    for (q, v) in transpose8x16(panel).iter().enumerate() {
                        // SAFETY: panel i/MR's 16 k steps from pp lie inside ap
                        // (⌈m/MR⌉·MR·kc floats, the caller's contract).
                        unsafe { _mm512_storeu_ps(ap.add(base + 2 * q * rows_per_panel), *v) };
                    }
                }
            }
        }
    }
}
