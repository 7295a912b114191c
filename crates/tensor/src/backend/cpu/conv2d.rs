//! conv2d forward, backward-input and backward-weight as im2col + GEMM.
//! A rayon task takes a block of images (several when the feature maps are
//! small, so each GEMM stays wide) and loops over the groups, with column
//! buffers bounded by the block. On AVX-512 (f32), 3×3 stride-1 layers run
//! all three passes as Winograd F(2×2, 3×3) (`conv2d_winograd.rs`), 4×4
//! stride-2 layers with ≥ 16 channels each side as F(2×2, 2×2)
//! (`conv2d_winograd2.rs`), and most other forwards need no column buffer:
//! stride 1 reads shifted rows of a padded copy in place
//! (`fwd_shifted_rows`), stride_w ≤ 2 packs the GEMM's panels straight from
//! the input (`fwd_gathered`, `conv2d_gather.rs`). Weight gradients whose
//! output rows come in 16s gather the column matrix into the GEMM's left
//! operand (`bwd_weight_gathered`); input gradients at stride 1 run as a
//! forward, at stride 2 on wide maps as one stride-1 GEMM per phase
//! (`conv2d_phases.rs`).
//! conv_transpose2d is conv2d_bwd_input (and its weight gradient is
//! conv2d_bwd_weight with the roles of input and output swapped).

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::matmul::{Mat, SharedOut, gemm, gemm_into};
#[cfg(target_arch = "x86_64")]
use super::sgemm::{PackedA, Rows, View, sgemm_cols, sgemm_packed, sgemm_packed_rows, sgemm_packed_with, sgemm_with_a};
use super::{CHUNK, CpuStorage, build_rows, dense, with_float2, with_scratch, zeroed_rows};
use crate::ops::conv2d::ConvGeom;
use crate::{Float, Layout, Result};

impl ConvGeom {
    pub(super) fn cg(&self) -> usize {
        self.c / self.p.groups
    }
    pub(super) fn og(&self) -> usize {
        self.o / self.p.groups
    }
    /// Rows of the column matrix: Cg·kh·kw.
    fn krows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn ocols(&self) -> usize {
        self.oh * self.ow
    }

    /// Every run of in-bounds taps: for column-matrix row (c, i, j) in
    /// `rows` and output row oy, the outputs ox in [lo, hi) read input
    /// offsets x0 + (ox − lo)·stride_w. Calls `f(row, oy·ow, lo, hi, x0)` for
    /// every (row, oy), with lo = hi when the whole output row is padding.
    fn for_each_run(&self, rows: Range<usize>, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
        let [sh, sw] = self.p.stride;
        let [ph, pw] = self.p.padding;
        let [dh, dw] = self.p.dilation;
        for row in rows {
            let (c, i, j) = (row / (self.kh * self.kw), row / self.kw % self.kh, row % self.kw);
            // ix = ox·sw + j·dw − pw must lie in [0, w).
            let shift = j * dw;
            let lo = if pw > shift { (pw - shift).div_ceil(sw) } else { 0 }.min(self.ow);
            let hi = if self.w + pw > shift { (self.w + pw - shift - 1) / sw + 1 } else { 0 }.min(self.ow);
            for oy in 0..self.oh {
                let iy = (oy * sh + i * dh) as isize - ph as isize;
                if lo >= hi || iy < 0 || iy >= self.h as isize {
                    f(row, oy * self.ow, 0, 0, 0);
                    continue;
                }
                let x0 = (c * self.h + iy as usize) * self.w + lo * sw + shift - pw;
                f(row, oy * self.ow, lo, hi, x0);
            }
        }
    }

    /// `for_each_run` with output rows oy, oy + 1 of one column-matrix row
    /// handed over together, `f(row, oy·ow, run, Some(next run))` (runs as
    /// [lo, hi, x0]), when two rows fit one 16-lane vector (ow ≤ 8); an odd
    /// last row, or every row when ow > 8, comes alone with None.
    #[cfg(target_arch = "x86_64")]
    fn for_each_run_pair(&self, rows: Range<usize>, mut f: impl FnMut(usize, usize, [usize; 3], Option<[usize; 3]>)) {
        let pairs = 2 * self.ow <= 16;
        let mut pending: Option<(usize, usize, [usize; 3])> = None;
        self.for_each_run(rows, |r, c, lo, hi, x0| match pending.take() {
            Some((pr, pc, run)) if pr == r && pc + self.ow == c => f(pr, pc, run, Some([lo, hi, x0])),
            held => {
                if let Some((pr, pc, run)) = held {
                    f(pr, pc, run, None);
                }
                if pairs {
                    pending = Some((r, c, [lo, hi, x0]));
                } else {
                    f(r, c, [lo, hi, x0], None);
                }
            }
        });
        if let Some((pr, pc, run)) = pending {
            f(pr, pc, run, None);
        }
    }

    /// Images per forward / input-gradient task. Candidates run from half
    /// of what gives the GEMM ~256 columns up to 768 columns (fewer when
    /// the column buffer would pass 4 MB); the pick
    /// minimises the busiest thread's work counted in whole 48-column
    /// register tiles: `rounds` of tasks per thread × the padded width. So
    /// 64 images of 4×4 take 32 per task (2 tasks of 512 columns), not 15
    /// (5 tasks: 3 on one thread, 2 on the other, and a third of the time
    /// one core idle), and 8×8 maps take 3 (192 = 4 tiles exactly).
    fn images_per_task(&self) -> usize {
        let (oc, n) = (self.ocols().max(1), self.n.max(1));
        let by_width = 256usize.div_ceil(oc);
        // Column buffers past ~4 MB (kr × width) fall out of L2 and cost more than tiles save.
        let by_bytes = (1usize << 20) / (self.krows().max(1) * oc);
        let cap = n.min(by_width.max((768 / oc).min(by_bytes))).max(1);
        let threads = rayon::current_num_threads().max(1);
        let busiest = |nb: usize| n.div_ceil(nb).div_ceil(threads) * (nb * oc).div_ceil(48) * 48;
        // At least one task per thread when the images allow: 1×1 outputs
        // (256 images "wanted") would otherwise run as one serial task.
        let lo = (by_width / 2).min(n.div_ceil(threads)).clamp(1, cap);
        (lo..=cap).min_by_key(|&nb| (busiest(nb), nb)).unwrap_or(1)
    }

    /// Images per weight-gradient block (the GEMM's depth): ~256 pixels
    /// (deeper blocks made the column buffers outgrow L2 and ran slower).
    /// Depends on the geometry only, so the summation order is the same
    /// on every machine.
    fn images_per_weight_block(&self) -> usize {
        256usize.div_ceil(self.ocols().max(1)).clamp(1, self.n.max(1))
    }

    /// Columns of images `n0..n0+nb` of group `gi` into `cols` (krows × nb·ocols):
    /// image `i`'s pixels are columns i·ocols.. .
    fn im2col<T: Float>(&self, x: &[T], n0: usize, nb: usize, gi: usize, table: Option<&[u32]>, cols: &mut [T]) {
        self.im2col_rows(x, n0, nb, gi, 0..self.krows(), table, cols)
    }

    /// For small output rows (≤ 8 wide, where the per-run work of
    /// `for_each_run` outweighs the copies): the input offset, within one
    /// image's group planes, of every column-matrix element (r, q), or
    /// `PAD` for a padding tap. Built once per call, shared by all images.
    /// None where `short_rows` serves instead (f32 on AVX-512, stride ≤ 2).
    fn small_map_table<T: Float>(&self) -> Option<Vec<u32>> {
        let (oc, plane) = (self.ocols(), self.cg() * self.h * self.w);
        if self.short_rows::<T>() || self.ow > 8 || self.krows() * oc > 1 << 22 || plane >= PAD as usize {
            return None;
        }
        let mut table = vec![PAD; self.krows() * oc];
        self.for_each_run(0..self.krows(), |r, c, lo, hi, x0| {
            for (t, ox) in (lo..hi).enumerate() {
                table[r * oc + c + ox] = (x0 + t * self.p.stride[1]) as u32;
            }
        });
        Some(table)
    }

    /// Whether the forward skips im2col (`fwd_shifted_rows`): stride 1,
    /// one image per task (maps of ≥ 256 outputs), f32 on the AVX-512 GEMM.
    #[cfg(target_arch = "x86_64")]
    fn shifted_rows<T>(&self) -> bool {
        f32_on_avx512::<T>() && super::sgemm::available() && self.p.stride == [1, 1] && self.images_per_task() == 1
    }

    /// Whether the forward runs as Winograd F(2×2, 3×3) (`conv2d_winograd`).
    #[cfg(target_arch = "x86_64")]
    fn winograd<T>(&self) -> bool {
        f32_on_avx512::<T>() && super::sgemm::available() && super::conv2d_winograd::applies(self)
    }

    /// The forward of image `img` without a column matrix. With stride 1,
    /// column-matrix row (c, i, j) is the zero-padded input shifted by
    /// (i·dh, j·dw), read with the padded row width wp: so the GEMM reads
    /// its B rows straight from one padded copy of the image (`Rows`) and
    /// computes outputs on the padded-width grid, oh × wp, of which the
    /// first ow of each row are kept (the other (kw − 1)·dw are discarded:
    /// 6% extra work for 3×3 on 32-wide maps, against an im2col that
    /// wrote every input value kh·kw times).
    #[cfg(target_arch = "x86_64")]
    fn fwd_shifted_rows(&self, x: &[f32], img: usize, packed: &[PackedA], y: &mut [MaybeUninit<f32>]) {
        let og = self.og();
        let (padded_len, wp, offsets) = self.shifted_layout();
        let cols = self.oh * wp;
        with_scratch([padded_len, og * cols], |xp: &mut [f32], tmp: &mut [f32]| {
            for gi in 0..self.p.groups {
                self.pad_image(x, img, gi, wp, xp);
                let rows = Rows { ptr: xp.as_ptr(), offsets: &offsets };
                // SAFETY: the CPU check is in `shifted_rows`; B's reads stay in xp
                // (above) and tmp holds og × cols.
                unsafe { sgemm_packed_rows(&packed[gi], cols, rows, false, tmp.as_mut_ptr(), cols) };
                for o in 0..og {
                    for oy in 0..self.oh {
                        let dst = &mut y[((gi * og + o) * self.oh + oy) * self.ow..][..self.ow];
                        for (d, &v) in dst.iter_mut().zip(&tmp[o * cols + oy * wp..][..self.ow]) {
                            d.write(v);
                        }
                    }
                }
            }
        });
    }

    /// The padded copy's length, its row width wp, and the offset of each
    /// column-matrix row (c, i, j) in it: c·plane + i·dh·wp + j·dw. Rows
    /// are pw + w wide (at least ow, the grid's valid columns): at stride 1
    /// an output row reads exactly pw columns past the right end of its
    /// input row, which are the next row's left padding (a 32-wide 3×3
    /// layer computes a 33-wide grid, not 34). The
    /// last row's shifts read up to (kw − 1)·dw past the planes: the
    /// highest read is offsets[kr − 1] + oh·wp − 1 = cg·plane + (kw − 1)·dw
    /// − 1 (oh ≤ hp − (kh − 1)·dh at stride 1), inside the copy.
    #[cfg(target_arch = "x86_64")]
    fn shifted_layout(&self) -> (usize, usize, Vec<usize>) {
        let ([ph, pw], [dh, dw]) = (self.p.padding, self.p.dilation);
        let (hp, wp) = (self.h + 2 * ph, (self.w + pw).max(self.ow));
        let plane = hp * wp;
        let offsets = (0..self.krows())
            .map(|r| {
                let (c, i, j) = (r / (self.kh * self.kw), r / self.kw % self.kh, r % self.kw);
                c * plane + i * dh * wp + j * dw
            })
            .collect();
        (self.cg() * plane + (self.kw - 1) * dw, wp, offsets)
    }

    /// Group `gi` of image `img` into `xp`, zero-padded, rows wp wide.
    #[cfg(target_arch = "x86_64")]
    fn pad_image(&self, x: &[f32], img: usize, gi: usize, wp: usize, xp: &mut [f32]) {
        let (cg, [ph, pw]) = (self.cg(), self.p.padding);
        let plane = (self.h + 2 * ph) * wp;
        let src = &x[(img * self.c + gi * cg) * self.h * self.w..][..cg * self.h * self.w];
        xp.fill(0.0);
        for (c, plane_in) in src.chunks_exact(self.h * self.w).enumerate() {
            for (yy, row) in plane_in.chunks_exact(self.w).enumerate() {
                xp[c * plane + (yy + ph) * wp + pw..][..self.w].copy_from_slice(row);
            }
        }
    }

    /// Whether im2col / col2im run each output row as one AVX-512 vector
    /// (`short_rows`): f32, rows of ≤ 16 outputs, stride 1 or 2.
    fn short_rows<T>(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if f32_on_avx512::<T>() && self.ow <= 16 && self.p.stride[1] <= 2 {
            return true;
        }
        false
    }

    /// `im2col` of column-matrix rows `rows` only (cols row 0 = rows.start).
    /// Each run's geometry is worked out once for all the block's images.
    #[allow(clippy::too_many_arguments)]
    fn im2col_rows<T: Float>(
        &self,
        x: &[T],
        n0: usize,
        nb: usize,
        gi: usize,
        rows: Range<usize>,
        table: Option<&[u32]>,
        cols: &mut [T],
    ) {
        let (ld, oc, chw) = (nb * self.ocols(), self.ocols(), self.c * self.h * self.w);
        let x = &x[(n0 * self.c + gi * self.cg()) * self.h * self.w..];
        if let Some(table) = table {
            let plane = self.cg() * self.h * self.w;
            for i in 0..nb {
                let xi = &x[i * chw..][..plane];
                for r in rows.clone() {
                    let (dst, taps) = (&mut cols[(r - rows.start) * ld + i * oc..][..oc], &table[r * oc..][..oc]);
                    for (d, &t) in dst.iter_mut().zip(taps) {
                        *d = if t == PAD { T::zero() } else { xi[t as usize] };
                    }
                }
            }
            return;
        }
        let (sw, ow, r0) = (self.p.stride[1], self.ow, rows.start);
        #[cfg(target_arch = "x86_64")]
        if self.short_rows::<T>() {
            // SAFETY: T is f32 (`short_rows`).
            let (xs, cs) = unsafe { (as_f32(x), as_f32_mut(cols)) };
            self.for_each_run_pair(rows, |r, c, [lo, hi, x0], next| {
                let dst = &mut cs[(r - r0) * ld + c..];
                // SAFETY: the CPU has AVX-512 (`short_rows`); the bounds are checked inside.
                unsafe {
                    match next {
                        Some(b) => short_rows::gather_pair(dst, oc, xs, chw, nb, ow, sw, [[lo, hi, x0], b]),
                        None => short_rows::gather(dst, oc, xs, chw, nb, [ow, lo, hi, x0, sw]),
                    }
                }
            });
            return;
        }
        self.for_each_run(rows, |r, c, lo, hi, x0| {
            let len = hi - lo;
            for i in 0..nb {
                // Padding taps are written as zeros here: no separate memset.
                let line = &mut cols[(r - r0) * ld + i * oc + c..][..ow];
                line[..lo].fill(T::zero());
                line[hi..].fill(T::zero());
                let (dst, xi) = (&mut line[lo..hi], &x[i * chw + x0..]);
                if sw == 1 {
                    dst.copy_from_slice(&xi[..len]);
                } else if len > 0 {
                    gather_strided(dst, &xi[..(len - 1) * sw + 1], sw);
                }
            }
        });
    }

    /// dx of images `n0..` (Cg planes of group `gi` each) += scatter of cols.
    /// Every dx element still receives its terms in row order.
    fn col2im<T: Float>(&self, cols: &[T], nb: usize, gi: usize, table: Option<&[u32]>, dx_block: &mut [T]) {
        let (ld, oc, chw) = (nb * self.ocols(), self.ocols(), self.c * self.h * self.w);
        let dx = &mut dx_block[gi * self.cg() * self.h * self.w..];
        if let Some(table) = table {
            let plane = self.cg() * self.h * self.w;
            for i in 0..nb {
                let dxi = &mut dx[i * chw..][..plane];
                for r in 0..self.krows() {
                    let (src, taps) = (&cols[r * ld + i * oc..][..oc], &table[r * oc..][..oc]);
                    for (&v, &t) in src.iter().zip(taps) {
                        if t != PAD {
                            dxi[t as usize] += v;
                        }
                    }
                }
            }
            return;
        }
        let sw = self.p.stride[1];
        #[cfg(target_arch = "x86_64")]
        if self.short_rows::<T>() {
            // SAFETY: T is f32 (`short_rows`).
            let (cs, dxs) = unsafe { (as_f32(cols), as_f32_mut(dx)) };
            let ow = self.ow;
            self.for_each_run_pair(0..self.krows(), |r, c, [lo, hi, x0], next| {
                let src = &cs[r * ld + c..];
                // SAFETY: the CPU has AVX-512 (`short_rows`); the bounds are checked inside.
                unsafe {
                    match next {
                        Some(b) => short_rows::scatter_add_pair(dxs, chw, src, oc, nb, ow, sw, [[lo, hi, x0], b]),
                        None => short_rows::scatter_add(dxs, chw, src, oc, nb, [lo, hi, x0, sw]),
                    }
                }
            });
            return;
        }
        self.for_each_run(0..self.krows(), |r, c, lo, hi, x0| {
            let len = hi - lo;
            for i in 0..nb {
                let (src, dxi) = (&cols[r * ld + i * oc + c + lo..][..len], &mut dx[i * chw + x0..]);
                if sw == 1 {
                    dxi[..len].iter_mut().zip(src).for_each(|(d, s)| *d += *s);
                } else if len > 0 {
                    scatter_add_strided(&mut dxi[..(len - 1) * sw + 1], src, sw);
                }
            }
        });
    }

    /// (og × nb·ocols) ← rows of group `gi` of images n0.. of a (n, o, ocols) tensor.
    fn gather_out<T: Float>(&self, y: &[T], n0: usize, nb: usize, gi: usize, out: &mut [T]) {
        let (og, oc) = (self.og(), self.ocols());
        for i in 0..nb {
            for o in 0..og {
                let src = &y[((n0 + i) * self.o + gi * og + o) * oc..][..oc];
                out[o * nb * oc + i * oc..][..oc].copy_from_slice(src);
            }
        }
    }

    /// The (og × nb·ocols) rows of group `gi` for images n0..: borrowed
    /// straight from `y` for one image, else gathered into `buf`.
    fn out_rows<'a, T: Float>(&self, y: &'a [T], n0: usize, nb: usize, gi: usize, buf: &'a mut [T]) -> &'a [T] {
        if nb == 1 {
            let og = self.og();
            return &y[(n0 * self.o + gi * og) * self.ocols()..][..og * self.ocols()];
        }
        self.gather_out(y, n0, nb, gi, buf);
        buf
    }

    /// The inverse of `gather_out`, into the block of images n0.. of y
    /// (written, not read: the forward's output starts uninitialised).
    fn scatter_out<T: Float>(&self, tmp: &[T], nb: usize, gi: usize, y_block: &mut [MaybeUninit<T>]) {
        let (og, oc) = (self.og(), self.ocols());
        for i in 0..nb {
            for o in 0..og {
                let (dst, src) =
                    (&mut y_block[(i * self.o + gi * og + o) * oc..][..oc], &tmp[o * nb * oc + i * oc..][..oc]);
                dst.iter_mut().zip(src).for_each(|(d, &v)| {
                    d.write(v);
                });
            }
        }
    }
}

/// Never constructed off x86-64 (there is no AVX-512 GEMM to pack for).
#[cfg(not(target_arch = "x86_64"))]
enum PackedA {}

/// Per group, the weight matrix (og×kr, or its kr×og transpose) packed
/// once for the AVX-512 GEMM and shared by every image-block task (each
/// task packed it again before: up to 16 copies of 8 MB per call). None
/// when T is not f32 or the f32 GEMM is matrixmultiply.
fn packed_weights<T: Float>(w: &[T], g: &ConvGeom, transpose: bool) -> Option<Vec<PackedA>> {
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 4 && super::sgemm::available() {
        // SAFETY: T is f32 (the only 4-byte Float).
        let w = unsafe { as_f32(w) };
        let (og, kr) = (g.og(), g.krows());
        let pack = |gi: usize| {
            let wg = &w[gi * og * kr..][..og * kr];
            let (m, k, view) = if transpose {
                (kr, og, View { ptr: wg.as_ptr(), rs: 1, cs: kr })
            } else {
                (og, kr, View { ptr: wg.as_ptr(), rs: kr, cs: 1 })
            };
            // SAFETY: the view covers exactly wg; the CPU check is above.
            unsafe { PackedA::new(m, k, view) }
        };
        return Some((0..g.p.groups).map(pack).collect());
    }
    let _ = (w, g, transpose);
    None
}

/// `gemm` whose A is the weights: pre-packed when `packed` is given.
fn gemm_w<T: Float>(
    dims: [usize; 3],
    packed: Option<&PackedA>,
    a: Mat<T>,
    b: Mat<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let [m, _, n] = dims;
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n);
    // SAFETY: `c` is a unique borrow covering every element written.
    unsafe { gemm_w_into(dims, packed, a, b, beta, c.as_mut_ptr(), ldc) }
}

/// `gemm_w` into a raw C (with beta 0, C is written and never read).
///
/// # Safety
/// As `gemm_into`: `c + i·ldc + j` for i < m, j < n valid and unaliased.
unsafe fn gemm_w_into<T: Float>(
    dims: [usize; 3],
    packed: Option<&PackedA>,
    a: Mat<T>,
    b: Mat<T>,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    let Some(pa) = packed else {
        // SAFETY: forwarded.
        return unsafe { gemm_into(dims, a, b, beta, c, ldc) };
    };
    #[cfg(target_arch = "x86_64")]
    {
        let [m, k, n] = dims;
        if m == 0 || n == 0 {
            return;
        }
        assert!(pa.dims() == (m, k) && b.data.len() >= b.span(k, n));
        assert!(std::mem::size_of::<T>() == 4 && (beta == T::zero() || beta == T::one()));
        let bv = View { ptr: b.data.as_ptr().cast(), rs: b.rs, cs: b.cs };
        // SAFETY: T is f32 (packed weights exist only then); the assert bounds b, the caller c.
        unsafe { sgemm_packed(pa, n, bv, beta == T::one(), c.cast(), ldc) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dims, a, b, beta, c, ldc);
        match *pa {}
    }
}

/// dst[t] = src[t·stride]: im2col of a strided conv. Stride 2 (every
/// DCGAN layer) runs as AVX-512 permutes on f32; the scalar loop was a
/// fifth of a stride-2 conv's forward time.
fn gather_strided<T: Float>(dst: &mut [T], src: &[T], stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if stride == 2 && f32_on_avx512::<T>() {
        // SAFETY: T is f32 (the only 4-byte Float); the lengths are passed on.
        let (d, s) = unsafe { (as_f32_mut(dst), as_f32(src)) };
        return unsafe { stride2::gather(d, s) };
    }
    for (t, d) in dst.iter_mut().enumerate() {
        *d = src[t * stride];
    }
}

/// dst[t·stride] += src[t]: col2im of a strided conv (see `gather_strided`).
fn scatter_add_strided<T: Float>(dst: &mut [T], src: &[T], stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if stride == 2 && f32_on_avx512::<T>() {
        // SAFETY: as in `gather_strided`.
        let (d, s) = unsafe { (as_f32_mut(dst), as_f32(src)) };
        return unsafe { stride2::scatter_add(d, s) };
    }
    for (t, s) in src.iter().enumerate() {
        dst[t * stride] += *s;
    }
}

/// Whether T is f32 (the only 4-byte Float) on a CPU with the AVX-512 copies.
#[cfg(target_arch = "x86_64")]
fn f32_on_avx512<T>() -> bool {
    std::mem::size_of::<T>() == 4 && super::avx512()
}

/// # Safety
/// T must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn as_f32<T>(v: &[T]) -> &[f32] {
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

/// A result computed as f32 handed back as T, with no copy.
///
/// # Safety
/// T must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn f32_vec_as<T>(v: Vec<f32>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: T is f32: same size, alignment and allocation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}

/// # Safety
/// T must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn as_f32_mut<T>(v: &mut [T]) -> &mut [f32] {
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod stride2 {
    use std::arch::x86_64::*;

    /// Mask of the first `n` lanes (all 16 for n ≥ 16).
    pub fn first(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
    }

    /// dst[t] = src[2t]; src.len() ≥ 2·dst.len() − 1. Blocks of 16 outputs,
    /// the last one masked (DCGAN rows are 16–32 long: no scalar tail).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gather(dst: &mut [f32], src: &[f32]) {
        assert!(dst.is_empty() || src.len() > 2 * (dst.len() - 1));
        // Lane i takes element 2i of the 32-lane pair (a, b).
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for t in (0..dst.len()).step_by(16) {
            let (count, need) = ((dst.len() - t).min(16), src.len() - 2 * t);
            // SAFETY: the masks keep every load below `need` elements past
            // src[2t] and every store below `count` past dst[t].
            unsafe {
                let p = src.as_ptr().add(2 * t);
                let a = _mm512_maskz_loadu_ps(first(need), p);
                let b = _mm512_maskz_loadu_ps(first(need.saturating_sub(16)), p.wrapping_add(16));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(t), first(count), _mm512_permutex2var_ps(a, even, b));
            }
        }
    }

    /// dst[2t] += src[t]; dst.len() ≥ 2·src.len() − 1. Odd lanes are
    /// masked out of the add, so they keep their bits (−0 stays −0).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scatter_add(dst: &mut [f32], src: &[f32]) {
        assert!(src.is_empty() || dst.len() > 2 * (src.len() - 1));
        // Lane 2i of lo/hi takes src lane i / 8 + i.
        let lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
        for t in (0..src.len()).step_by(16) {
            let count = (src.len() - t).min(16);
            // Even lanes of the 2·count − 1 destination elements.
            let span = 2 * count - 1;
            let (m0, m1) = (first(span) & 0x5555, first(span.saturating_sub(16)) & 0x5555);
            // SAFETY: masked lanes are never touched; the rest lie inside both slices.
            unsafe {
                let v = _mm512_maskz_loadu_ps(first(count), src.as_ptr().add(t));
                let p = dst.as_mut_ptr().add(2 * t);
                let q = p.wrapping_add(16);
                let (d0, d1) = (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, q));
                _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(d0, _mm512_permutexvar_ps(lo, v)));
                _mm512_mask_storeu_ps(q, m1, _mm512_add_ps(d1, _mm512_permutexvar_ps(hi, v)));
            }
        }
    }
}

/// im2col / col2im of one run (output row) for every image of a block,
/// each row one 16-lane vector: the run's masks and permutes are worked out
/// once and each image costs two loads, a permute and a store. Per-run
/// overhead was most of a DCGAN layer's im2col time (16-wide rows).
#[cfg(target_arch = "x86_64")]
mod short_rows {
    use std::arch::x86_64::*;

    use super::stride2::first;

    /// Lanes lo..hi.
    fn lanes(lo: usize, hi: usize) -> __mmask16 {
        first(hi) & !first(lo)
    }

    /// For images i < nb and outputs ox < ow (≤ 16): dst[i·ldd + ox] =
    /// src[i·lds + x0 + (ox − lo)·sw] for lo ≤ ox < hi, else 0 (sw 1 or 2).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gather(
        dst: &mut [f32],
        ldd: usize,
        src: &[f32],
        lds: usize,
        nb: usize,
        [ow, lo, hi, x0, sw]: [usize; 5],
    ) {
        assert!(ow <= 16 && (sw == 1 || sw == 2) && lo <= hi && hi <= ow);
        if nb == 0 {
            return;
        }
        assert!(dst.len() >= (nb - 1) * ldd + ow);
        let (store, run, len) = (first(ow), lanes(lo, hi), hi - lo);
        let need = if len == 0 { 0 } else { (len - 1) * sw + 1 };
        assert!(len == 0 || src.len() >= (nb - 1) * lds + x0 + need);
        // Lane ox takes element sw·(ox − lo) of the 32 loaded from x0.
        let step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let idx = _mm512_sub_epi32(
            _mm512_mullo_epi32(step, _mm512_set1_epi32(sw as i32)),
            _mm512_set1_epi32((sw * lo) as i32),
        );
        let (ma, mb) = (first(need), first(need.saturating_sub(16)));
        for i in 0..nb {
            // SAFETY: the loads read only the `need` elements from src[i·lds + x0]
            // and the store writes only dst[i·ldd..][..ow] (both checked above).
            unsafe {
                let p = src.as_ptr().wrapping_add(i * lds + x0);
                let a = _mm512_maskz_loadu_ps(ma, p);
                let b = _mm512_maskz_loadu_ps(mb, p.wrapping_add(16));
                _mm512_mask_storeu_ps(
                    dst.as_mut_ptr().add(i * ldd),
                    store,
                    _mm512_maskz_permutex2var_ps(run, a, idx, b),
                );
            }
        }
    }

    /// Lane j of a pair's index vector: element sw·(ox − lo) of the first
    /// run's 16 loaded values (lanes 0..ow) or of the second's (lanes
    /// ow..2·ow, offset 16 in the two-source permute), with the pair's lane
    /// mask. Out-of-run lanes get stray indices; the mask zeroes them.
    #[target_feature(enable = "avx512f")]
    fn pair_lanes(ow: usize, sw: usize, [a, b]: [[usize; 3]; 2]) -> (__m512i, __mmask16) {
        let step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let second = first(2 * ow) & !first(ow);
        // j − lo_a in the first half, j − ow − lo_b + 16/sw in the second: ·sw.
        let shift = _mm512_mask_blend_epi32(
            second,
            _mm512_set1_epi32(a[0] as i32),
            _mm512_set1_epi32((ow + b[0]) as i32 - (16 / sw) as i32),
        );
        let idx = _mm512_mullo_epi32(_mm512_sub_epi32(step, shift), _mm512_set1_epi32(sw as i32));
        (idx, lanes(a[0], a[1]) | lanes(ow + b[0], ow + b[1]))
    }

    /// `gather` of two output rows at once (ow ≤ 8): lanes 0..ow from run
    /// a, lanes ow..2·ow from run b, one 2·ow-lane store per image.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gather_pair(
        dst: &mut [f32],
        ldd: usize,
        src: &[f32],
        lds: usize,
        nb: usize,
        ow: usize,
        sw: usize,
        runs: [[usize; 3]; 2],
    ) {
        assert!(ow <= 8 && (sw == 1 || sw == 2) && runs.iter().all(|r| r[0] <= r[1] && r[1] <= ow));
        if nb == 0 {
            return;
        }
        assert!(dst.len() >= (nb - 1) * ldd + 2 * ow);
        // Each run reads at most (8 − 1)·2 + 1 = 15 values: one vector.
        let need = runs.map(|[lo, hi, _]| if hi == lo { 0 } else { (hi - lo - 1) * sw + 1 });
        for (r, n) in runs.iter().zip(need) {
            assert!(n == 0 || src.len() >= (nb - 1) * lds + r[2] + n);
        }
        let (idx, run) = pair_lanes(ow, sw, runs);
        let (ma, mb) = (first(need[0]), first(need[1]));
        for i in 0..nb {
            // SAFETY: each load reads only its run's `need` values, the store
            // only dst[i·ldd..][..2·ow] (all checked above).
            unsafe {
                let a = _mm512_maskz_loadu_ps(ma, src.as_ptr().wrapping_add(i * lds + runs[0][2]));
                let b = _mm512_maskz_loadu_ps(mb, src.as_ptr().wrapping_add(i * lds + runs[1][2]));
                _mm512_mask_storeu_ps(
                    dst.as_mut_ptr().add(i * ldd),
                    first(2 * ow),
                    _mm512_maskz_permutex2var_ps(run, a, idx, b),
                );
            }
        }
    }

    /// The adjoint of `gather_pair`: run a's input row += lanes 0..ow of
    /// src, run b's += lanes ow..2·ow (different input rows: no overlap).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scatter_add_pair(
        dst: &mut [f32],
        ldd: usize,
        src: &[f32],
        lds: usize,
        nb: usize,
        ow: usize,
        sw: usize,
        runs: [[usize; 3]; 2],
    ) {
        assert!(ow <= 8 && (sw == 1 || sw == 2) && runs.iter().all(|r| r[0] <= r[1] && r[1] <= ow));
        if nb == 0 {
            return;
        }
        assert!(src.len() >= (nb - 1) * lds + 2 * ow);
        let step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Destination lane j takes source lane base + lo + j/sw where j is a
        // multiple of sw (base 0 for run a, ow for run b).
        let from = if sw == 1 { step } else { _mm512_srli_epi32::<1>(step) };
        let (mut idx, mut mask, mut at) = ([from; 2], [0; 2], [0; 2]);
        for (k, &[lo, hi, x0]) in runs.iter().enumerate() {
            if lo < hi {
                let span = (hi - lo - 1) * sw + 1;
                assert!(dst.len() >= (nb - 1) * ldd + x0 + span);
                idx[k] = _mm512_add_epi32(from, _mm512_set1_epi32((k * ow + lo) as i32));
                mask[k] = first(span) & if sw == 1 { 0xffff } else { 0x5555 };
                at[k] = x0;
            }
        }
        for i in 0..nb {
            // SAFETY: the masks keep every access inside the checked spans.
            unsafe {
                let v = _mm512_maskz_loadu_ps(first(2 * ow), src.as_ptr().add(i * lds));
                for k in 0..2 {
                    let p = dst.as_mut_ptr().wrapping_add(i * ldd + at[k]);
                    let d = _mm512_maskz_loadu_ps(mask[k], p);
                    _mm512_mask_storeu_ps(p, mask[k], _mm512_add_ps(d, _mm512_permutexvar_ps(idx[k], v)));
                }
            }
        }
    }

    /// The adjoint: dst[i·ldd + x0 + (ox − lo)·sw] += src[i·lds + ox] for
    /// lo ≤ ox < hi. Untouched lanes keep their bits (−0 stays −0).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scatter_add(
        dst: &mut [f32],
        ldd: usize,
        src: &[f32],
        lds: usize,
        nb: usize,
        [lo, hi, x0, sw]: [usize; 4],
    ) {
        assert!(hi <= 16 && (sw == 1 || sw == 2));
        if nb == 0 || lo >= hi {
            return;
        }
        let (run, span) = (lanes(lo, hi), (hi - lo - 1) * sw + 1);
        assert!(dst.len() >= (nb - 1) * ldd + x0 + span && src.len() >= (nb - 1) * lds + hi);
        // Destination lane j (of the 32 from x0) takes source lane lo + j/sw
        // when j is a multiple of sw.
        let step = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let half = _mm512_srli_epi32::<1>(step);
        let (i0, i1, m0, m1) = if sw == 1 {
            (step, step, first(span), 0)
        } else {
            (
                half,
                _mm512_add_epi32(half, _mm512_set1_epi32(8)),
                first(span) & 0x5555,
                first(span.saturating_sub(16)) & 0x5555,
            )
        };
        let (i0, i1) =
            (_mm512_add_epi32(i0, _mm512_set1_epi32(lo as i32)), _mm512_add_epi32(i1, _mm512_set1_epi32(lo as i32)));
        for i in 0..nb {
            // SAFETY: the masks keep every access inside the checked spans.
            unsafe {
                let v = _mm512_maskz_loadu_ps(run, src.as_ptr().add(i * lds));
                let p = dst.as_mut_ptr().add(i * ldd + x0);
                let q = p.wrapping_add(16);
                let (d0, d1) = (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, q));
                _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(d0, _mm512_permutexvar_ps(i0, v)));
                _mm512_mask_storeu_ps(q, m1, _mm512_add_ps(d1, _mm512_permutexvar_ps(i1, v)));
            }
        }
    }
}

fn fwd_t<T: Float>(x: &[T], lx: &Layout, w: &[T], lw: &Layout, g: ConvGeom) -> Vec<T> {
    let (x, w) = (dense(x, lx), dense(w, lw));
    let (groups, og, kr, oc) = (g.p.groups, g.og(), g.krows(), g.ocols());
    if g.n * g.o * oc == 0 || kr == 0 {
        return vec![T::zero(); g.n * g.o * oc];
    }
    #[cfg(target_arch = "x86_64")]
    if g.winograd::<T>() {
        // SAFETY: T is f32 on AVX-512 with the GEMM available (`winograd`).
        return unsafe { f32_vec_as(super::conv2d_winograd::forward(as_f32(&x), as_f32(&w), &g)) };
    }
    #[cfg(target_arch = "x86_64")]
    if f32_on_avx512::<T>() && super::sgemm::available() {
        // SAFETY: T is f32 (checked).
        if let Some(plan) = super::conv2d_winograd2::Plan::forward(&g, unsafe { as_f32(&w) }) {
            // SAFETY: AVX-512 with the GEMM available (checked); x holds n images.
            return unsafe { f32_vec_as(plan.run(as_f32(&x), g.n)) };
        }
    }
    let nb = g.images_per_task();
    let packed = packed_weights(&w, &g, false);
    #[cfg(target_arch = "x86_64")]
    if let Some(packed) = packed.as_ref().filter(|_| g.shifted_rows::<T>()) {
        // SAFETY: T is f32 (`shifted_rows`).
        let xs = unsafe { as_f32(&x) };
        return build_rows(g.n * g.o * oc, g.o * oc, |start, yb| {
            // SAFETY: T is f32, and MaybeUninit<T> has T's layout.
            let yb = unsafe { std::slice::from_raw_parts_mut(yb.as_mut_ptr().cast(), yb.len()) };
            g.fwd_shifted_rows(xs, start / (g.o * oc), packed, yb);
        });
    }
    #[cfg(target_arch = "x86_64")]
    // Rows under 8 outputs stay with im2col: their paired gathers, shared by
    // a block's images, beat per-tap packing (4×4 maps: 17 vs 18 ms).
    if let Some(packed) =
        packed.as_ref().filter(|_| g.p.stride[1] <= 2 && g.ow >= 8 && g.kw <= super::conv2d_gather::MAX_KW)
    {
        // SAFETY: T is f32 (packed weights exist only then).
        return unsafe { fwd_gathered(as_f32(&x), &g, packed, nb) };
    }
    let table = g.small_map_table::<T>();
    // Every output element is written once (by the GEMM or scatter_out),
    // so the output is not zeroed first (a fifth of the Cin = 1 layer's time).
    build_rows(g.n * g.o * oc, nb * g.o * oc, |start, yb| {
        let (n0, nbi) = (start / (g.o * oc), yb.len() / (g.o * oc));
        with_scratch([kr * nbi * oc, if nbi > 1 { og * nbi * oc } else { 0 }], |cols: &mut [T], tmp: &mut [T]| {
            for gi in 0..groups {
                g.im2col(&x, n0, nbi, gi, table.as_deref(), cols);
                let wg = &w[gi * og * kr..][..og * kr];
                let pw = packed.as_ref().map(|p| &p[gi]);
                let (a, b) = (Mat::rows(wg, kr), Mat::rows(cols, nbi * oc));
                if nbi > 1 {
                    gemm_w([og, kr, nbi * oc], pw, a, b, T::zero(), tmp, nbi * oc);
                    g.scatter_out(tmp, nbi, gi, yb);
                } else {
                    // One image: its group's output rows are contiguous, no staging copy.
                    let out = &mut yb[gi * og * oc..][..og * oc];
                    // SAFETY: `out` is a unique borrow of og·oc elements; with beta 0
                    // the GEMM writes every one of them and reads none.
                    unsafe { gemm_w_into([og, kr, oc], pw, a, b, T::zero(), out.as_mut_ptr().cast(), oc) };
                }
            }
        });
    })
}

/// The forward with the column matrix packed straight from the input
/// (`conv2d_gather`): the same tasks, GEMMs and output copies as the
/// im2col path, minus the column buffer.
///
/// # Safety
/// T must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn fwd_gathered<T: Float>(x: &[f32], g: &ConvGeom, packed: &[PackedA], nb: usize) -> Vec<T> {
    let (og, oc, chw, plane) = (g.og(), g.ocols(), g.c * g.h * g.w, g.cg() * g.h * g.w);
    let taps = super::conv2d_gather::taps(g);
    build_rows(g.n * g.o * oc, nb * g.o * oc, |start, yb| {
        let (n0, nbi) = (start / (g.o * oc), yb.len() / (g.o * oc));
        // SAFETY: T is f32 (the caller's contract), and MaybeUninit<f32> has f32's layout.
        let yb: &mut [MaybeUninit<f32>] = unsafe { std::slice::from_raw_parts_mut(yb.as_mut_ptr().cast(), yb.len()) };
        super::conv2d_gather::prefetch(&x[n0 * chw..(n0 + nbi) * chw]);
        with_scratch([0, if nbi > 1 { og * nbi * oc } else { 0 }], |_: &mut [f32], tmp: &mut [f32]| {
            for (gi, pw) in packed.iter().enumerate() {
                let from = n0 * chw + gi * plane;
                let src = super::conv2d_gather::Gather { x: &x[from..from + (nbi - 1) * chw + plane], taps: &taps, g };
                if nbi > 1 {
                    // SAFETY: tmp holds og × nbi·oc; the CPU has AVX-512 (packed weights exist).
                    unsafe { sgemm_packed_with(pw, nbi * oc, &src, false, tmp.as_mut_ptr(), nbi * oc) };
                    g.scatter_out(tmp, nbi, gi, yb);
                } else {
                    let out = &mut yb[gi * og * oc..][..og * oc];
                    // SAFETY: `out` is a unique borrow of og·oc elements, all written (beta 0).
                    unsafe { sgemm_packed_with(pw, oc, &src, false, out.as_mut_ptr().cast(), oc) };
                }
            }
        });
    })
}

/// At stride 1, dx is the forward convolution of dy with the weights
/// flipped in space and transposed within each group, padded by
/// dilation·(k − 1) − padding: when that forward runs without im2col
/// (`shifted_rows`, `winograd`), the flipped weights (one small copy) replace a
/// column matrix and its col2im.
#[cfg(target_arch = "x86_64")]
fn bwd_input_as_forward<T: Float>(dy: &[T], ldy: &Layout, w: &[T], g: &ConvGeom) -> Option<Vec<T>> {
    let ([ph, pw], [dh, dw]) = (g.p.padding, g.p.dilation);
    let full = [dh * (g.kh - 1), dw * (g.kw - 1)];
    // conv_transpose2d's output_padding (allowed at stride 1 with dilation)
    // adds input rows that no output reads: the forward would not cover them.
    if g.p.stride != [1, 1]
        || ph > full[0]
        || pw > full[1]
        || g.oh + full[0] != g.h + 2 * ph
        || g.ow + full[1] != g.w + 2 * pw
    {
        return None;
    }
    let p = crate::Conv2dParams { padding: [full[0] - ph, full[1] - pw], ..g.p };
    let back = ConvGeom { n: g.n, c: g.o, h: g.oh, w: g.ow, o: g.c, kh: g.kh, kw: g.kw, oh: g.h, ow: g.w, p };
    if !back.shifted_rows::<T>() && !back.winograd::<T>() {
        return None;
    }
    // flipped[gi·cg + c][o][i][j] = w[gi·og + o][c][kh−1−i][kw−1−j]
    let (cg, og, k2) = (g.cg(), g.og(), g.kh * g.kw);
    let mut flipped = Vec::with_capacity(w.len());
    for gi in 0..g.p.groups {
        for c in 0..cg {
            for o in 0..og {
                let src = &w[((gi * og + o) * cg + c) * k2..][..k2];
                flipped.extend(src.iter().rev());
            }
        }
    }
    let lf = Layout::contiguous(&back.weight_shape());
    Some(fwd_t(dy, ldy, &flipped, &lf, back))
}

fn bwd_input_t<T: Float>(dy: &[T], ldy: &Layout, w: &[T], lw: &Layout, g: ConvGeom) -> Vec<T> {
    let (dy, w) = (dense(dy, ldy), dense(w, lw));
    #[cfg(target_arch = "x86_64")]
    if let Some(dx) = bwd_input_as_forward(&dy, &Layout::contiguous(&g.output_shape()), &w, &g) {
        return dx;
    }
    #[cfg(target_arch = "x86_64")]
    if f32_on_avx512::<T>() && super::sgemm::available() {
        // SAFETY: T is f32 (checked).
        if let Some(plan) = super::conv2d_winograd2::Plan::bwd_input(&g, unsafe { as_f32(&w) }) {
            // SAFETY: AVX-512 with the GEMM available (checked); dy holds n images.
            return unsafe { f32_vec_as(plan.run(as_f32(&dy), g.n)) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(plan) =
        Some(&g).filter(|_| f32_on_avx512::<T>() && super::sgemm::available()).and_then(super::conv2d_phases::Plan::new)
    {
        // SAFETY: T is f32 (checked).
        return unsafe { f32_vec_as(super::conv2d_phases::bwd_input(as_f32(&dy), as_f32(&w), &g, &plan)) };
    }
    let (groups, og, kr, oc) = (g.p.groups, g.og(), g.krows(), g.ocols());
    let plane = g.c * g.h * g.w;
    if g.n * plane == 0 || og * oc == 0 {
        return vec![T::zero(); g.n * plane];
    }
    let nb = g.images_per_task();
    let packed = packed_weights(&w, &g, true);
    let table = g.small_map_table::<T>();
    // col2im accumulates into dx: each task's images start zeroed.
    zeroed_rows(g.n * plane, nb * plane, |start, dxb| {
        let (n0, nbi) = (start / plane, dxb.len() / plane);
        with_scratch([if nbi > 1 { og * nbi * oc } else { 0 }, kr * nbi * oc], |dyg: &mut [T], cols: &mut [T]| {
            for gi in 0..groups {
                let dyg = g.out_rows(&dy, n0, nbi, gi, dyg);
                let wg = &w[gi * og * kr..][..og * kr];
                // cols = W_gᵀ (kr × og) · dy_g (og × nb·oc)
                let pw = packed.as_ref().map(|p| &p[gi]);
                gemm_w([kr, og, nbi * oc], pw, Mat::t(wg, kr), Mat::rows(dyg, nbi * oc), T::zero(), cols, nbi * oc);
                g.col2im(cols, nbi, gi, table.as_deref(), dxb);
            }
        });
    })
}

fn bwd_weight_t<T: Float>(x: &[T], lx: &Layout, dy: &[T], ldy: &Layout, g: ConvGeom) -> Vec<T> {
    let (x, dy) = (dense(x, lx), dense(dy, ldy));
    let (groups, og, kr, oc) = (g.p.groups, g.og(), g.krows(), g.ocols());
    let size = g.o * kr;
    if g.n == 0 || oc == 0 {
        return vec![T::zero(); size];
    }
    #[cfg(target_arch = "x86_64")]
    if g.winograd::<T>() {
        // SAFETY: T is f32 on AVX-512 with the GEMM available (`winograd`).
        return unsafe { f32_vec_as(super::conv2d_winograd::weight_grad(as_f32(&x), as_f32(&dy), &g)) };
    }
    #[cfg(target_arch = "x86_64")]
    if f32_on_avx512::<T>() && super::sgemm::available() {
        // SAFETY: T is f32 on AVX-512 with the GEMM available (checked); x and dy hold n images.
        if let Some(dw) = unsafe { super::conv2d_winograd2::weight_grad(&g, as_f32(&x), as_f32(&dy)) } {
            // SAFETY: T is f32.
            return unsafe { f32_vec_as(dw) };
        }
    }
    let threads = rayon::current_num_threads();
    // (The path depends on the geometry only, never on the thread count.)
    if kr >= 4 * 48 {
        // Gathered before shifted rows: on the U-Net 3×3 layer it measured
        // 1–3% faster (no padded-width grid, no transposed pack).
        #[cfg(target_arch = "x86_64")]
        if f32_on_avx512::<T>() && super::sgemm::available() && super::conv2d_gather::GatherA::fits(&g) {
            // SAFETY: T is f32 (checked).
            return unsafe { f32_vec_as(bwd_weight_gathered(as_f32(&x), as_f32(&dy), &g, threads)) };
        }
        #[cfg(target_arch = "x86_64")]
        if g.shifted_rows::<T>() {
            // SAFETY: T is f32 (`shifted_rows`).
            return unsafe { f32_vec_as(bwd_weight_shifted_rows(as_f32(&x), as_f32(&dy), &g, threads)) };
        }
        return bwd_weight_by_columns(&x, &dy, &g, threads);
    }
    // Few columns: a fixed split of the images, each block summed serially
    // and the partials added in order: the result does not depend on the
    // thread count or on scheduling (resumed runs stay bit-identical).
    let nb = g.images_per_weight_block();
    let table = g.small_map_table::<T>();
    let blocks = g.n.div_ceil(nb);
    let per = blocks.div_ceil(REDUCE_SPLITS).max(1);
    let partials: Vec<Vec<T>> = (0..blocks.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut dw = vec![T::zero(); size];
            with_scratch([kr * nb * oc, og * nb * oc], |cols_all: &mut [T], dyg_all: &mut [T]| {
                for blk in chunk * per..((chunk + 1) * per).min(blocks) {
                    let (n0, nbi) = (blk * nb, nb.min(g.n - blk * nb));
                    let (cols, dyg) = (&mut cols_all[..kr * nbi * oc], &mut dyg_all[..og * nbi * oc]);
                    for gi in 0..groups {
                        g.im2col(&x, n0, nbi, gi, table.as_deref(), cols);
                        let dyg = g.out_rows(&dy, n0, nbi, gi, dyg);
                        let dwg = &mut dw[gi * og * kr..][..og * kr];
                        // dW_g (og × kr) += dy_g (og × nb·oc) · colsᵀ (nb·oc × kr)
                        gemm([og, nbi * oc, kr], Mat::rows(dyg, nbi * oc), Mat::t(cols, nbi * oc), T::one(), dwg, kr);
                    }
                }
            });
            dw
        })
        .collect();
    // The partials added in their fixed order, in parallel over elements.
    zeroed_rows(size, CHUNK, |start, out| {
        for p in &partials {
            out.iter_mut().zip(&p[start..]).for_each(|(a, b)| *a += *b);
        }
    })
}

/// The dW column ranges of the by-columns weight gradients: one per task,
/// each a whole number of 48-column register tiles (the last may be short).
fn dw_column_blocks(kr: usize, tasks: usize) -> Vec<Range<usize>> {
    let width = kr.div_ceil(48).div_ceil(tasks.max(1)) * 48;
    (0..kr).step_by(width.max(1)).map(|r0| r0..kr.min(r0 + width)).collect()
}

/// `bwd_weight_by_columns` without im2col (geometries where the forward
/// is `shifted_rows`): dW_g[:, cols] += dY (og × oh·wp, on the padded-width
/// grid, zero past ow) · Bᵀ, where column j of B is the padded image from
/// offset j (`sgemm_cols`): the zeros make the discarded grid columns add
/// nothing. The same split and summation order as by_columns.
#[cfg(target_arch = "x86_64")]
fn bwd_weight_shifted_rows(x: &[f32], dy: &[f32], g: &ConvGeom, tasks: usize) -> Vec<f32> {
    let (og, kr, ow) = (g.og(), g.krows(), g.ow);
    let (padded_len, wp, offsets) = g.shifted_layout();
    let cols = g.oh * wp;
    let mut dw = vec![0.0f32; g.o * kr];
    let shared = SharedOut(dw.as_mut_ptr());
    dw_column_blocks(kr, tasks).into_par_iter().for_each(|Range { start: r0, end: r1 }| {
        with_scratch([padded_len, og * cols], |xp: &mut [f32], dyp: &mut [f32]| {
            for img in 0..g.n {
                for gi in 0..g.p.groups {
                    g.pad_image(x, img, gi, wp, xp);
                    for (o, grid) in dyp.chunks_exact_mut(cols).enumerate() {
                        let src = &dy[((img * g.o + gi * og + o) * g.oh) * ow..][..g.oh * ow];
                        for (row, s) in grid.chunks_exact_mut(wp).zip(src.chunks_exact(ow)) {
                            row[..ow].copy_from_slice(s);
                            row[ow..].fill(0.0);
                        }
                    }
                    let a = View { ptr: dyp.as_ptr(), rs: cols, cs: 1 };
                    let b = Rows { ptr: xp.as_ptr(), offsets: &offsets[r0..r1] };
                    // SAFETY: B reads stay in xp (`shifted_layout`); rows r0..r1 of
                    // group gi's og×kr block lie inside dw, and no other task
                    // writes these columns; the CPU check is in `shifted_rows`.
                    unsafe { sgemm_cols([og, cols, r1 - r0], a, b, img > 0, shared.ptr().add(gi * og * kr + r0), kr) };
                }
            }
        });
    });
    dw
}

/// `bwd_weight_by_columns` with the column matrix as the GEMM's left
/// operand, gathered straight from the input (`GatherA`): each task
/// computes its rows of dW_gᵀ = cols · dY_gᵀ over every image block in
/// order, then transposes them into its columns of dW. No column buffer
/// and no transposed pack of it; the same split and summation order.
///
/// # Safety
/// The CPU has AVX-512 and `sgemm::available()`; `GatherA::fits(g)`.
#[cfg(target_arch = "x86_64")]
unsafe fn bwd_weight_gathered(x: &[f32], dy: &[f32], g: &ConvGeom, tasks: usize) -> Vec<f32> {
    use super::conv2d_gather::{Gather, GatherA, taps};
    let (groups, og, kr, oc) = (g.p.groups, g.og(), g.krows(), g.ocols());
    let (chw, plane) = (g.c * g.h * g.w, g.cg() * g.h * g.w);
    let mut dw = vec![0.0f32; g.o * kr];
    let nb = g.images_per_weight_block();
    let taps = taps(g);
    let shared = SharedOut(dw.as_mut_ptr());
    dw_column_blocks(kr, tasks).into_par_iter().for_each(|rows| {
        let (r0, w) = (rows.start, rows.len());
        with_scratch([groups * w * og, og * nb * oc], |dwt: &mut [f32], dyg_all: &mut [f32]| {
            for (blk, n0) in (0..g.n).step_by(nb).enumerate() {
                let nbi = nb.min(g.n - n0);
                for gi in 0..groups {
                    let dyg = g.out_rows(dy, n0, nbi, gi, &mut dyg_all[..og * nbi * oc]);
                    let from = n0 * chw + gi * plane;
                    let x = &x[from..from + (nbi - 1) * chw + plane];
                    let a = GatherA { src: Gather { x, taps: &taps, g }, rows: rows.clone() };
                    // dyᵀ: element (p, o) at dyg[o·nbi·oc + p].
                    let b = View { ptr: dyg.as_ptr(), rs: 1, cs: nbi * oc };
                    // SAFETY: dW_gᵀ[rows] is this task's w × og scratch; the CPU
                    // and geometry checks are the caller's.
                    unsafe { sgemm_with_a([w, nbi * oc, og], &a, b, blk > 0, dwt[gi * w * og..].as_mut_ptr(), og) };
                }
            }
            for (gi, t) in dwt.chunks_exact(w * og).enumerate() {
                for o in 0..og {
                    // SAFETY: columns r0..r0+w of row gi·og + o lie inside dw,
                    // and no other task writes these columns.
                    let out = unsafe { std::slice::from_raw_parts_mut(shared.ptr().add((gi * og + o) * kr + r0), w) };
                    out.iter_mut().zip(t[o..].iter().step_by(og)).for_each(|(d, s)| *d = *s);
                }
            }
        });
    });
    dw
}

/// The weight gradient split by columns of dW (column-matrix rows): each
/// task runs its own rows' im2col and one GEMM chain over every image
/// block in order, into its own columns of dW. No partial copies of dW (8
/// MB each for a 512×256×4×4 layer, and their memsets and sums), and every
/// element is summed in the same order whatever the split, so the result
/// does not depend on the thread count.
fn bwd_weight_by_columns<T: Float>(x: &[T], dy: &[T], g: &ConvGeom, tasks: usize) -> Vec<T> {
    let (groups, og, kr, oc) = (g.p.groups, g.og(), g.krows(), g.ocols());
    let mut dw = vec![T::zero(); g.o * kr];
    let nb = g.images_per_weight_block();
    let table = g.small_map_table::<T>();
    let shared = SharedOut(dw.as_mut_ptr());
    dw_column_blocks(kr, tasks).into_par_iter().for_each(|rows| {
        let (r0, w) = (rows.start, rows.len());
        with_scratch([w * nb * oc, og * nb * oc], |cols_all: &mut [T], dyg_all: &mut [T]| {
            for (blk, n0) in (0..g.n).step_by(nb).enumerate() {
                let nbi = nb.min(g.n - n0);
                let (cols, dyg) = (&mut cols_all[..w * nbi * oc], &mut dyg_all[..og * nbi * oc]);
                for gi in 0..groups {
                    g.im2col_rows(x, n0, nbi, gi, rows.clone(), table.as_deref(), cols);
                    let dyg = g.out_rows(dy, n0, nbi, gi, dyg);
                    let beta = if blk == 0 { T::zero() } else { T::one() };
                    // dW_g[:, rows] (og × w) (+)= dy_g (og × nb·oc) · cols_rowsᵀ
                    let (a, b) = (Mat::rows(dyg, nbi * oc), Mat::t(cols, nbi * oc));
                    // SAFETY: rows r0.. of group gi's og×kr block lie inside dw, and
                    // no other task writes these columns.
                    unsafe { gemm_into([og, nbi * oc, w], a, b, beta, shared.ptr().add(gi * og * kr + r0), kr) };
                }
            }
        });
    });
    dw
}

/// A padding tap in `small_map_table`.
const PAD: u32 = u32::MAX;

/// Number of independent partial sums in deterministic parallel reductions.
const REDUCE_SPLITS: usize = 8;

pub fn conv2d_fwd(x: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout, g: ConvGeom) -> Result<CpuStorage> {
    with_float2!("conv2d", x, w, |a, b| fwd_t(a, lx, b, lw, g))
}

pub fn conv2d_bwd_input(dy: &CpuStorage, ldy: &Layout, w: &CpuStorage, lw: &Layout, g: ConvGeom) -> Result<CpuStorage> {
    with_float2!("conv2d_bwd_input", dy, w, |a, b| bwd_input_t(a, ldy, b, lw, g))
}

pub fn conv2d_bwd_weight(
    x: &CpuStorage,
    lx: &Layout,
    dy: &CpuStorage,
    ldy: &Layout,
    g: ConvGeom,
) -> Result<CpuStorage> {
    with_float2!("conv2d_bwd_weight", x, dy, |a, b| bwd_weight_t(a, lx, b, ldy, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv2dParams;

    #[test]
    fn small_map_table_matches_the_runs_bit_for_bit() {
        // Strides, paddings past the kernel, dilation and groups; rows of 1..8 outputs.
        for (h, k, stride, pad, dil, groups) in
            [(8, 4, 2, 1, 1, 1), (5, 3, 1, 2, 2, 2), (9, 4, 3, 4, 1, 1), (3, 1, 1, 0, 1, 3)]
        {
            let (n, c, o) = (3, 6, 6);
            let out = |len: usize| (len + 2 * pad - dil * (k - 1) - 1) / stride + 1;
            let p = Conv2dParams { stride: [stride; 2], padding: [pad; 2], dilation: [dil; 2], groups };
            let g = ConvGeom { n, c, h, w: h + 1, o, kh: k, kw: k, oh: out(h), ow: out(h + 1), p };
            let table = g.small_map_table::<f64>().expect("rows of at most 8 outputs use the table");
            let x: Vec<f32> = (0..n * c * h * (h + 1)).map(|i| (i as f32 * 0.37).sin()).collect();
            let len = g.krows() * n * g.ocols();
            for gi in 0..groups {
                let (mut by_runs, mut by_table) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                g.im2col(&x, 0, n, gi, None, &mut by_runs);
                g.im2col(&x, 0, n, gi, Some(&table), &mut by_table);
                assert_eq!(by_runs, by_table, "im2col, case h={h} k={k} group {gi}");
                // −0 in dx must survive both adjoints the same way.
                let (mut dx_runs, mut dx_table) = (vec![-0.0f32; x.len()], vec![-0.0f32; x.len()]);
                g.col2im(&by_runs, n, gi, None, &mut dx_runs);
                g.col2im(&by_runs, n, gi, Some(&table), &mut dx_table);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dx_runs), bits(&dx_table), "col2im, case h={h} k={k} group {gi}");
            }
        }
    }

    /// The one-vector-per-row copies (f32 on AVX-512) against the generic
    /// run loops (f64 takes those): the same values and, for col2im, the
    /// same bits (−0 kept), for rows of 1..16 outputs, strides 1 and 2,
    /// padding wider than the kernel, dilation and groups.
    #[test]
    fn short_rows_match_the_run_loops() {
        for (h, w, k, stride, pad, dil, groups) in [
            (32, 32, 4, 2, 1, 1, 1),
            (16, 14, 3, 1, 1, 1, 2),
            (9, 17, 3, 2, 3, 2, 1),
            (4, 4, 4, 2, 1, 1, 1),
            (1, 5, 1, 1, 0, 1, 3),
            // Rows of ≤ 8 go two per vector: even and odd row counts,
            // padding rows at the top and bottom, stride 1 with dilation.
            (16, 16, 4, 2, 1, 1, 1),
            (8, 8, 4, 2, 1, 1, 1),
            (7, 9, 3, 2, 2, 1, 1),
            (5, 6, 3, 1, 1, 2, 2),
        ] {
            let (n, c, o) = (3, 6, 6);
            let out = |len: usize| (len + 2 * pad - dil * (k - 1) - 1) / stride + 1;
            let p = Conv2dParams { stride: [stride; 2], padding: [pad; 2], dilation: [dil; 2], groups };
            let g = ConvGeom { n, c, h, w, o, kh: k, kw: k, oh: out(h), ow: out(w), p };
            assert!(g.ow <= 16);
            if !g.short_rows::<f32>() {
                return; // no AVX-512 here: f32 takes the run loops too
            }
            let x32: Vec<f32> = (0..n * c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
            let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let len = g.krows() * n * g.ocols();
            for gi in 0..groups {
                let (mut c32, mut c64) = (vec![f32::NAN; len], vec![f64::NAN; len]);
                g.im2col(&x32, 0, n, gi, None, &mut c32);
                g.im2col(&x64, 0, n, gi, None, &mut c64);
                assert_eq!(c32.iter().map(|&v| v as f64).collect::<Vec<_>>(), c64, "im2col h={h} w={w} group {gi}");
                // col2im against the run loop written out in f32 (an f64 sum would round differently).
                let mut got = vec![-0.0f32; x32.len()];
                g.col2im(&c32, n, gi, None, &mut got);
                let mut want = vec![-0.0f32; x32.len()];
                let (ld, oc, chw, base) = (n * g.ocols(), g.ocols(), c * h * w, gi * g.cg() * h * w);
                g.for_each_run(0..g.krows(), |r, col, lo, hi, x0| {
                    for i in 0..n {
                        for (t, ox) in (lo..hi).enumerate() {
                            want[base + i * chw + x0 + t * stride] += c32[r * ld + i * oc + col + ox];
                        }
                    }
                });
                let bad = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(bad.is_none(), "col2im h={h} w={w} group {gi}: first difference at {bad:?}");
            }
        }
    }

    #[test]
    fn strided_copies_match_the_scalar_loops() {
        for stride in 1..4 {
            for len in [0usize, 1, 15, 16, 17, 31, 33, 64, 70] {
                let src: Vec<f32> = (0..len * stride + 3).map(|i| i as f32 * 0.5 - 7.0).collect();
                let mut got = vec![f32::NAN; len];
                gather_strided(&mut got, &src, stride);
                let want: Vec<f32> = (0..len).map(|t| src[t * stride]).collect();
                assert_eq!(got, want, "gather stride {stride} len {len}");

                // −0 in the untouched positions must keep its sign.
                let mut dst = vec![-0.0f32; len * stride + 3];
                let add: Vec<f32> = (0..len).map(|t| t as f32 + 1.0).collect();
                scatter_add_strided(&mut dst, &add, stride);
                for (i, v) in dst.iter().enumerate() {
                    let want = if i % stride == 0 && i / stride < len { (i / stride) as f32 + 1.0 } else { -0.0 };
                    assert_eq!(v.to_bits(), want.to_bits(), "scatter stride {stride} len {len} at {i}");
                }
            }
        }
    }
}
