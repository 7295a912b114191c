//! Fused scaled-dot-product attention, tiled like FlashAttention: the
//! forward streams BC-key blocks past BR-row query blocks with an online
//! softmax (one BR×BC score tile per task, never an L×S matrix) and saves
//! the row log-sum-exp; the backward recomputes probability tiles from it
//! (dQ parallel over query blocks, then dK/dV over key blocks, so no
//! atomics). Each tile product is a GEMM.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::attention_exp16 as exp16;
use super::matmul::{Mat, gemm};
use super::{CpuStorage, dense, with_scratch};
use crate::{Float, Layout, Result};

/// Shapes of one attention call, batch dims flattened into `b`.
#[derive(Debug, Clone, Copy)]
pub struct AttnGeom {
    pub b: usize,
    pub l: usize,
    pub s: usize,
    pub e: usize,
    pub ev: usize,
    pub scale: f64,
    pub causal: bool,
}

/// An additive mask viewed through its layout broadcast to (batch..., L, S).
struct Mask<'a, T> {
    data: &'a [T],
    layout: &'a Layout,
}

impl<T: Float> Mask<'_, T> {
    /// Offset of element (batch b, row i, col 0), and the column stride.
    fn row(&self, b: usize, i: usize) -> (usize, usize) {
        let r = self.layout.rank();
        let (shape, strides) = (self.layout.shape(), self.layout.strides());
        let mut off = self.layout.offset() + i * strides[r - 2];
        let mut rest = b;
        for d in (0..r - 2).rev() {
            off += (rest % shape[d]) * strides[d];
            rest /= shape[d];
        }
        (off, strides[r - 1])
    }
}

/// Query rows and keys per tile: a BR×BC score tile (128 KiB in f32) stays
/// in L2 and each of its three products is one GEMM. Measured against 64×128
/// on B8 H4 L256: forward 4.2 -> 3.6 ms (d 64), 2.8 -> 2.4 ms (d 32), as
/// fewer, larger GEMMs pack their operands fewer times.
const BR: usize = 128;
const BC: usize = 256;

fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| s + x * y)
}

/// Inputs of one call as dense slices: q (b, l, e), k (b, s, e), v (b, s, ev).
struct Qkv<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    mask: Option<Mask<'a, T>>,
    g: AttnGeom,
    /// Set by the forward (see `scale_in_exp`).
    fold_scale: bool,
}

impl<T: Float> Qkv<'_, T> {
    /// out (ni × nj) = scale · q[b, i0..] · k[b, j0..]ᵀ + mask, −inf where
    /// masked or (causal) j > i. Unscaled where `self.scale_in_exp()`.
    fn scores(&self, b: usize, i0: usize, ni: usize, j0: usize, nj: usize, out: &mut [T]) {
        let g = &self.g;
        let q = Mat::rows(&self.q[(b * g.l + i0) * g.e..], g.e);
        let k = Mat::t(&self.k[(b * g.s + j0) * g.e..], g.e);
        gemm([ni, g.e, nj], q, k, T::zero(), out, nj);
        let scale = T::from_f64(g.scale);
        super::simd(
            #[inline(always)]
            || {
                for ii in 0..ni {
                    let row = &mut out[ii * nj..(ii + 1) * nj];
                    // Causal: keys j > i are masked out; the rest stay live.
                    let live = if g.causal { (i0 + ii + 1).saturating_sub(j0).min(nj) } else { nj };
                    let (live, dead) = row.split_at_mut(live);
                    dead.fill(T::neg_infinity());
                    match self.mask.as_ref().map(|m| (m, m.row(b, i0 + ii))) {
                        Some((m, (off, cs))) => {
                            for (jj, x) in live.iter_mut().enumerate() {
                                *x = *x * scale + m.data[off + (j0 + jj) * cs];
                            }
                        }
                        // The forward's exp applies the scale itself.
                        None if self.scale_in_exp() => {}
                        // A plain loop (vectorises): the branchy per-element form was ~9% of attention.
                        None => live.iter_mut().for_each(|x| *x = *x * scale + T::zero()),
                    }
                }
            },
        )
    }

    /// Whether the forward folds the scale into its exp, exp(scale·s − m),
    /// sparing a pass over the score tile: only without a mask (added after
    /// scaling) and for scale > 0 (so the row max of s gives that of scale·s).
    fn scale_in_exp(&self) -> bool {
        // In T: an f64 scale that rounds to 0 in f32 would turn −inf·0 into NaN.
        self.fold_scale && self.mask.is_none() && T::from_f64(self.g.scale) > T::zero()
    }

    fn v_block(&self, b: usize, j0: usize) -> &[T] {
        &self.v[(b * self.g.s + j0) * self.g.ev..]
    }
}

/// The largest of `init` and `x` (NaNs are skipped; the exp turns them back into NaN).
#[inline(always)]
fn max_run<T: Float>(x: &[T], init: T) -> T {
    let mut acc = [init; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            // A compare-select vectorises to one max; `T::max`'s NaN rule does not.
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().chain(chunks.remainder()).fold(init, |a, &x| if x > a { x } else { a })
}

/// `x` as f32 when T is f32 and the CPU has AVX-512 (`exp16`'s passes).
#[inline(always)]
fn as_f32_on_avx512<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of::<T>() == 4 && super::avx512() {
        // SAFETY: the only 4-byte Float is f32.
        return Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) });
    }
    None
}

fn fwd_t<T: Float>(t: &Qkv<T>) -> (Vec<T>, Vec<T>) {
    let g = t.g;
    // Scale 1 where the score tiles are already scaled.
    let exp_scale = if t.scale_in_exp() { T::from_f64(g.scale) } else { T::one() };
    let mut out = vec![T::zero(); g.b * g.l * g.ev];
    let mut lse = vec![T::zero(); g.b * g.l];
    if g.l == 0 {
        return (out, lse);
    }
    let tasks = out.par_chunks_mut((g.l * g.ev).max(1)).zip(lse.par_chunks_mut(g.l)).enumerate();
    tasks.for_each(|(b, (out_b, lse_b))| {
        let blocks = out_b.par_chunks_mut((BR * g.ev).max(1)).zip(lse_b.par_chunks_mut(BR)).enumerate();
        blocks.for_each(|(blk, (o, lse_blk))| {
            let (i0, ni) = (blk * BR, lse_blk.len());
            let mut m = vec![T::neg_infinity(); ni];
            let mut sum = vec![T::zero(); ni];
            // The score tile is scratch: each GEMM writes it whole before it is read.
            with_scratch([ni * BC, 0], |st: &mut [T], _: &mut [T]| {
                for j0 in (0..g.s).step_by(BC) {
                    let nj = BC.min(g.s - j0);
                    let st = &mut st[..ni * nj];
                    t.scores(b, i0, ni, j0, nj, st);
                    // Online softmax: rescale what was accumulated to the new row max.
                    super::simd(
                        #[inline(always)]
                        || {
                            for ii in 0..ni {
                                let row = &mut st[ii * nj..(ii + 1) * nj];
                                let new_m = m[ii].max(exp_scale * max_run(row, T::neg_infinity()));
                                if new_m == T::neg_infinity() {
                                    row.fill(T::zero());
                                    continue;
                                }
                                let corr = (m[ii] - new_m).exp();
                                sum[ii] *= corr;
                                o[ii * g.ev..(ii + 1) * g.ev].iter_mut().for_each(|x| *x *= corr);
                                if let Some(row) = as_f32_on_avx512(row) {
                                    // SAFETY: the CPU has AVX-512 (checked with the cast).
                                    sum[ii] += T::from_f64(unsafe {
                                        exp16::exp_sum(row, exp_scale.to_f64() as f32, new_m.to_f64() as f32)
                                    } as f64);
                                } else {
                                    // Two plain loops (map, then a lane-parallel sum) vectorise.
                                    // (Not mul_add: without FMA hardware that is a libm call per element.)
                                    row.iter_mut().for_each(|x| *x = (*x * exp_scale - new_m).exp_fast());
                                    sum[ii] += super::reduce::sum_run(row);
                                }
                                m[ii] = new_m;
                            }
                        },
                    );
                    gemm([ni, nj, g.ev], Mat::rows(st, nj), Mat::rows(t.v_block(b, j0), g.ev), T::one(), o, g.ev);
                }
            });
            // A fully masked row attends to nothing: output 0 as PyTorch (2.5+),
            // and lse = +inf so that the backward's P = exp(s − lse) is 0.
            for ii in 0..ni {
                let dead = sum[ii] == T::zero();
                let inv = if dead { T::zero() } else { T::one() / sum[ii] };
                o[ii * g.ev..(ii + 1) * g.ev].iter_mut().for_each(|x| *x *= inv);
                lse_blk[ii] = if dead { T::infinity() } else { m[ii] + sum[ii].ln() };
            }
        });
    });
    (out, lse)
}

/// Saved forward values and the incoming gradient, dense.
struct Saved<'a, T> {
    o: &'a [T],
    dout: &'a [T],
    lse: &'a [T],
}

/// Turns a score tile into probabilities P = exp(s − lse) in place and
/// returns dS = P ⊙ (dO·Vᵀ − D) in `ds` (both ni × nj).
#[allow(clippy::too_many_arguments)]
fn p_and_ds<T: Float>(
    t: &Qkv<T>,
    sv: &Saved<T>,
    d: &[T],
    b: usize,
    i0: usize,
    ni: usize,
    j0: usize,
    nj: usize,
    p: &mut [T],
    ds: &mut [T],
) {
    let g = &t.g;
    t.scores(b, i0, ni, j0, nj, p);
    let dout = Mat::rows(&sv.dout[(b * g.l + i0) * g.ev..], g.ev);
    gemm([ni, g.ev, nj], dout, Mat::t(t.v_block(b, j0), g.ev), T::zero(), ds, nj);
    super::simd(
        #[inline(always)]
        || {
            for ii in 0..ni {
                let row = b * g.l + i0 + ii;
                let (lse, dr) = (sv.lse[row], d[row]);
                let (pr, dsr) = (&mut p[ii * nj..(ii + 1) * nj], &mut ds[ii * nj..(ii + 1) * nj]);
                if let (Some(pr), Some(dsr)) = (as_f32_on_avx512(pr), as_f32_on_avx512(dsr)) {
                    // SAFETY: the CPU has AVX-512 (checked with the casts).
                    unsafe { exp16::p_and_ds(pr, dsr, lse.to_f64() as f32, dr.to_f64() as f32) };
                    continue;
                }
                // exp_fast(−inf) = 0: masked scores need no branch.
                pr.iter_mut().for_each(|x| *x = (*x - lse).exp_fast());
                dsr.iter_mut().zip(pr.iter()).for_each(|(s, &x)| *s = x * (*s - dr));
            }
        },
    )
}

/// The ni×nj dS tile at column j0 of `out`, an (ni.. × s) matrix whose
/// row 0 is the tile's first query.
fn store_ds<T: Copy>(out: &mut [T], s: usize, j0: usize, [ni, nj]: [usize; 2], ds: &[T]) {
    for ii in 0..ni {
        out[ii * s + j0..][..nj].copy_from_slice(&ds[ii * nj..(ii + 1) * nj]);
    }
}

/// dQ rows of the tile's query block += dS · K[b, j0..] (both backward forms).
fn add_dq<T: Float>(t: &Qkv<T>, b: usize, j0: usize, [ni, nj]: [usize; 2], ds: &[T], dq_blk: &mut [T]) {
    let g = &t.g;
    let k = Mat::rows(&t.k[(b * g.s + j0) * g.e..], g.e);
    gemm([ni, nj, g.e], Mat::rows(ds, nj), k, T::one(), dq_blk, g.e);
}

/// dVᵀ and dKᵀ columns of the tile's key block += dO[b, i0..]ᵀ · P and
/// Q[b, i0..]ᵀ · dS (both backward forms). Transposed, so the GEMMs are
/// wide (n = nj, not the head size: n = 64 left a third of the register
/// tile idle) and both read P and dS as stored.
fn add_dk_dv_t<T: Float>(
    t: &Qkv<T>,
    sv: &Saved<T>,
    (b, i0): (usize, usize),
    [ni, nj]: [usize; 2],
    (p, ds): (&[T], &[T]),
    (dkt, dvt, ld): (&mut [T], &mut [T], usize),
) {
    let g = &t.g;
    let dout_t = Mat::t(&sv.dout[(b * g.l + i0) * g.ev..], g.ev);
    gemm([g.ev, ni, nj], dout_t, Mat::rows(p, nj), T::one(), dvt, ld);
    let q_t = Mat::t(&t.q[(b * g.l + i0) * g.e..], g.e);
    gemm([g.e, ni, nj], q_t, Mat::rows(ds, nj), T::one(), dkt, ld);
}

/// dst (rows × cols) = scale · srcᵀ, src being cols × rows with row stride `ld`.
fn untranspose<T: Float>(src: &[T], ld: usize, [rows, cols]: [usize; 2], scale: T, dst: &mut [T]) {
    for (r, row) in dst.chunks_mut(cols.max(1)).take(rows).enumerate() {
        for (c, x) in row.iter_mut().enumerate() {
            *x = src[c * ld + r] * scale;
        }
    }
}

/// Returns (dq, dk, dv, dscores if `want_ds`: the gradient of the
/// pre-softmax scores, i.e. of an additive mask before broadcasting).
fn bwd_t<T: Float>(t: &Qkv<T>, sv: &Saved<T>, want_ds: bool) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let g = t.g;
    if g.ev == 0 {
        // dO is empty: dP = dO·Vᵀ = 0 and D = 0, so dS and every gradient are 0.
        let z = |n: usize| vec![T::zero(); n];
        return (z(g.b * g.l * g.e), z(g.b * g.s * g.e), vec![], z(if want_ds { g.b * g.l * g.s } else { 0 }));
    }
    if g.e == 0 {
        // No query/key features (the scores are the mask alone): the tiled
        // passes split dQ and dK, which are empty here, so run them with one
        // zero feature (the same scores) and drop its gradients.
        let (q, k) = (vec![T::zero(); g.b * g.l], vec![T::zero(); g.b * g.s]);
        let mask = t.mask.as_ref().map(|m| Mask { data: m.data, layout: m.layout });
        let one = Qkv { q: &q, k: &k, v: t.v, mask, g: AttnGeom { e: 1, ..g }, fold_scale: false };
        let (_, _, dv, ds) = bwd_t(&one, sv, want_ds);
        return (vec![], vec![], dv, ds);
    }
    let scale = T::from_f64(g.scale);
    // D_i = do_i · o_i
    let d: Vec<T> =
        (0..g.b * g.l).into_par_iter().map(|r| dot(&sv.dout[r * g.ev..][..g.ev], &sv.o[r * g.ev..][..g.ev])).collect();
    let mut dq = vec![T::zero(); g.b * g.l * g.e];
    let mut ds_all = vec![T::zero(); if want_ds { g.b * g.l * g.s } else { 0 }];
    if g.b >= 2 * rayon::current_num_threads() {
        // Enough batches to keep every thread busy: one pass per batch.
        let (mut dk, mut dv) = (vec![T::zero(); g.b * g.s * g.e], vec![T::zero(); g.b * g.s * g.ev]);
        if g.l > 0 && g.s > 0 {
            bwd_by_batch(t, sv, &d, &mut dq, &mut dk, &mut dv, want_ds.then_some(&mut ds_all[..]));
        }
        return (dq, dk, dv, ds_all);
    }
    if g.l > 0 && g.s > 0 {
        // dQ (and dS), parallel over (batch, query block).
        let blocks_per_b = g.l.div_ceil(BR);
        let dq_blocks: Vec<&mut [T]> =
            dq.chunks_mut((g.l * g.e).max(1)).flat_map(|c| c.chunks_mut((BR * g.e).max(1))).collect();
        let ds_blocks: Vec<Option<&mut [T]>> = if want_ds {
            ds_all.chunks_mut(g.l * g.s).flat_map(|c| c.chunks_mut(BR * g.s)).map(Some).collect()
        } else {
            (0..g.b * blocks_per_b).map(|_| None).collect()
        };
        dq_blocks.into_par_iter().zip(ds_blocks).enumerate().for_each(|(task, (dq_blk, mut ds_blk))| {
            let (b, i0) = (task / blocks_per_b, (task % blocks_per_b) * BR);
            let ni = BR.min(g.l - i0);
            with_scratch([ni * BC; 2], |p: &mut [T], ds: &mut [T]| {
                for j0 in (0..g.s).step_by(BC) {
                    let nj = BC.min(g.s - j0);
                    let (p, ds) = (&mut p[..ni * nj], &mut ds[..ni * nj]);
                    p_and_ds(t, sv, &d, b, i0, ni, j0, nj, p, ds);
                    if let Some(out) = ds_blk.as_deref_mut() {
                        store_ds(out, g.s, j0, [ni, nj], ds);
                    }
                    add_dq(t, b, j0, [ni, nj], ds, dq_blk);
                }
            });
            dq_blk.iter_mut().for_each(|x| *x *= scale);
        });
    }
    let mut dk = vec![T::zero(); g.b * g.s * g.e];
    let mut dv = vec![T::zero(); g.b * g.s * g.ev];
    if g.l > 0 && g.s > 0 {
        // dK, dV: parallel over (batch, key block), looping over query blocks.
        let kb = g.s.div_ceil(BC);
        let dk_blocks: Vec<&mut [T]> =
            dk.chunks_mut((g.s * g.e).max(1)).flat_map(|c| c.chunks_mut((BC * g.e).max(1))).collect();
        let dv_blocks: Vec<&mut [T]> =
            dv.chunks_mut((g.s * g.ev).max(1)).flat_map(|c| c.chunks_mut((BC * g.ev).max(1))).collect();
        dk_blocks.into_par_iter().zip(dv_blocks).enumerate().for_each(|(task, (dk_blk, dv_blk))| {
            let (b, j0) = (task / kb, (task % kb) * BC);
            let nj = BC.min(g.s - j0);
            let (mut dkt, mut dvt) = (vec![T::zero(); g.e * nj], vec![T::zero(); g.ev * nj]);
            with_scratch([BR * nj; 2], |p: &mut [T], ds: &mut [T]| {
                for i0 in (0..g.l).step_by(BR) {
                    let ni = BR.min(g.l - i0);
                    let (p, ds) = (&mut p[..ni * nj], &mut ds[..ni * nj]);
                    p_and_ds(t, sv, &d, b, i0, ni, j0, nj, p, ds);
                    add_dk_dv_t(t, sv, (b, i0), [ni, nj], (p, ds), (&mut dkt, &mut dvt, nj));
                }
            });
            untranspose(&dkt, nj, [nj, g.e], scale, dk_blk);
            untranspose(&dvt, nj, [nj, g.ev], T::one(), dv_blk);
        });
    }
    (dq, dk, dv, ds_all)
}

/// The backward as one task per batch: every (query block, key block)
/// tile's P and dS are computed once and feed dQ, dK and dV together (the
/// split form below recomputes them in a second pass for dK and dV). Each
/// gradient element receives its terms in the same order as the split
/// form, so both give the same bits.
fn bwd_by_batch<T: Float>(
    t: &Qkv<T>,
    sv: &Saved<T>,
    d: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    ds_all: Option<&mut [T]>,
) {
    let g = t.g;
    let scale = T::from_f64(g.scale);
    let ds_chunks: Vec<Option<&mut [T]>> = match ds_all {
        Some(all) => all.chunks_mut(g.l * g.s).map(Some).collect(),
        None => (0..g.b).map(|_| None).collect(),
    };
    let per_batch = dq.par_chunks_mut(g.l * g.e).zip(dk.par_chunks_mut(g.s * g.e)).zip(dv.par_chunks_mut(g.s * g.ev));
    per_batch.zip(ds_chunks).enumerate().for_each(|(b, (((dqb, dkb), dvb), mut dsb))| {
        let (mut dkt, mut dvt) = (vec![T::zero(); g.e * g.s], vec![T::zero(); g.ev * g.s]);
        with_scratch([BR * BC; 2], |p: &mut [T], ds: &mut [T]| {
            for i0 in (0..g.l).step_by(BR) {
                let ni = BR.min(g.l - i0);
                for j0 in (0..g.s).step_by(BC) {
                    let nj = BC.min(g.s - j0);
                    let (p, ds) = (&mut p[..ni * nj], &mut ds[..ni * nj]);
                    p_and_ds(t, sv, d, b, i0, ni, j0, nj, p, ds);
                    if let Some(out) = dsb.as_deref_mut() {
                        store_ds(&mut out[i0 * g.s..], g.s, j0, [ni, nj], ds);
                    }
                    add_dq(t, b, j0, [ni, nj], ds, &mut dqb[i0 * g.e..]);
                    add_dk_dv_t(t, sv, (b, i0), [ni, nj], (p, ds), (&mut dkt[j0..], &mut dvt[j0..], g.s));
                }
            }
        });
        dqb.iter_mut().for_each(|x| *x *= scale);
        untranspose(&dkt, g.s, [g.s, g.e], scale, dkb);
        untranspose(&dvt, g.s, [g.s, g.ev], T::one(), dvb);
    });
}

/// q, k, v are (b, l|s, e|ev) dense views; the mask layout is broadcast to
/// (batch..., l, s). Returns (out, lse).
pub fn attention_fwd(
    q: (&CpuStorage, &Layout),
    k: (&CpuStorage, &Layout),
    v: (&CpuStorage, &Layout),
    mask: Option<(&CpuStorage, &Layout)>,
    g: AttnGeom,
) -> Result<(CpuStorage, CpuStorage)> {
    macro_rules! run {
        ($var:ident) => {{
            // Operands of another dtype are an error, never a panic.
            let (CpuStorage::$var(qd), CpuStorage::$var(kd), CpuStorage::$var(vd)) = (q.0, k.0, v.0) else {
                return Err(crate::Error::DTypeMismatch {
                    op: "scaled_dot_product_attention",
                    lhs: q.0.dtype(),
                    rhs: k.0.dtype(),
                });
            };
            let (qd, kd, vd) = (dense(qd, q.1), dense(kd, k.1), dense(vd, v.1));
            let mask = match mask {
                Some((CpuStorage::$var(m), l)) => Some(Mask { data: m, layout: l }),
                Some((m, _)) => {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention",
                        lhs: q.0.dtype(),
                        rhs: m.dtype(),
                    });
                }
                None => None,
            };
            let (o, lse) = fwd_t(&Qkv { q: &qd, k: &kd, v: &vd, mask, g, fold_scale: true });
            Ok((CpuStorage::$var(o), CpuStorage::$var(lse)))
        }};
    }
    match q.0 {
        CpuStorage::F32(_) => run!(F32),
        CpuStorage::F64(_) => run!(F64),
        other => Err(crate::Error::UnsupportedDType {
            op: "scaled_dot_product_attention",
            dtype: other.dtype(),
            device: crate::Device::Cpu,
        }),
    }
}

/// Inputs in order q, k, v, out, dout, lse; all dense-able views of one
/// float dtype (checked by the caller). Returns (dq, dk, dv, dscores).
pub fn attention_bwd(
    t: [(&CpuStorage, &Layout); 6],
    mask: Option<(&CpuStorage, &Layout)>,
    g: AttnGeom,
    want_ds: bool,
) -> Result<[CpuStorage; 4]> {
    macro_rules! run {
        ($var:ident) => {{
            let mut d = Vec::with_capacity(6);
            for (s, l) in t {
                let CpuStorage::$var(x) = s else {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention_bwd",
                        lhs: t[0].0.dtype(),
                        rhs: s.dtype(),
                    });
                };
                d.push(dense(x, l));
            }
            let mask = match mask {
                Some((CpuStorage::$var(m), l)) => Some(Mask { data: m, layout: l }),
                Some((m, _)) => {
                    return Err(crate::Error::DTypeMismatch {
                        op: "scaled_dot_product_attention_bwd",
                        lhs: t[0].0.dtype(),
                        rhs: m.dtype(),
                    });
                }
                None => None,
            };
            let qkv = Qkv { q: &d[0], k: &d[1], v: &d[2], mask, g, fold_scale: false };
            let saved = Saved { o: &d[3], dout: &d[4], lse: &d[5] };
            let (a, b, c, e) = bwd_t(&qkv, &saved, want_ds);
            Ok([CpuStorage::$var(a), CpuStorage::$var(b), CpuStorage::$var(c), CpuStorage::$var(e)])
        }};
    }
    match t[0].0 {
        CpuStorage::F32(_) => run!(F32),
        CpuStorage::F64(_) => run!(F64),
        other => Err(crate::Error::UnsupportedDType {
            op: "scaled_dot_product_attention_bwd",
            dtype: other.dtype(),
            device: crate::Device::Cpu,
        }),
    }
}
