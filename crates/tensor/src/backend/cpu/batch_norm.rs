//! batch_norm over (N, C, *): per-channel statistics (one shifted pass,
//! parallel over channels), the normalise-and-affine apply, and the fused
//! backward (one pass of sums, one of dx).

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::{CHUNK, CpuStorage, build_rows, dense};
use crate::{Float, Layout, Result};

/// (N, C, M) sizes of an input of shape (N, C, spatial...).
fn ncm(l: &Layout) -> (usize, usize, usize) {
    let s = l.shape();
    (s[0], s[1], s[2..].iter().product())
}

/// (Σ u, Σ v) of f(p[j], q[j]) = (u, v) over the elements j of channel `ch`: 32
/// independent T accumulators (two AVX-512 vectors per sum, so the adds
/// overlap), 16 for a shorter rest (rows of 4×4 maps: one vector; 8 lanes
/// would sit in half a register and cost a shuffle per add). The lanes
/// carry across rows and are totalled in f64 every `FLUSH` values, so short
/// rows do not each pay a 64-lane reduction and no lane sums more than
/// about 64 values (one row's share for rows over 2048). Inlined into the
/// caller's `simd` build.
#[inline(always)]
fn channel_sums<T: Float>(
    (n, c, m): (usize, usize, usize),
    ch: usize,
    p: &[T],
    q: &[T],
    f: impl Fn(T, T) -> (T, T),
) -> (f64, f64) {
    const WIDE: usize = 32;
    const FLUSH: usize = 2048;
    let (mut a, mut b) = ([T::zero(); WIDE], [T::zero(); WIDE]);
    let (mut sa, mut sb) = (0.0, 0.0);
    let mut pending = 0;
    for img in 0..n {
        let at = (img * c + ch) * m;
        let (p, q) = (&p[at..][..m], &q[at..][..m]);
        // Exact chunks: fixed-length slices keep the lanes in registers.
        let (wide, rest) = (p.chunks_exact(WIDE), q.chunks_exact(WIDE));
        let (p, q) = (wide.remainder(), rest.remainder());
        for (pc, qc) in wide.zip(rest) {
            for l in 0..WIDE {
                let (u, v) = f(pc[l], qc[l]);
                a[l] += u;
                b[l] += v;
            }
        }
        let (short, rest) = (p.chunks_exact(16), q.chunks_exact(16));
        let (p, q) = (short.remainder(), rest.remainder());
        for (pc, qc) in short.zip(rest) {
            for l in 0..16 {
                let (u, v) = f(pc[l], qc[l]);
                a[l] += u;
                b[l] += v;
            }
        }
        for (&pv, &qv) in p.iter().zip(q) {
            let (u, v) = f(pv, qv);
            sa += u.to_f64();
            sb += v.to_f64();
        }
        pending += m;
        if pending >= FLUSH || img + 1 == n {
            for l in 0..WIDE {
                sa += a[l].to_f64();
                sb += b[l].to_f64();
            }
            (a, b, pending) = ([T::zero(); WIDE], [T::zero(); WIDE], 0);
        }
    }
    (sa, sb)
}

/// A Vec of `n` elements built row by row (rows of `m`, m > 0): `f(row,
/// out)` fills one row. Tasks take whole rows, about `CHUNK` elements each,
/// and run them in one `simd` call, so 4×4 maps do not pay a task and a
/// dispatch per 16 values.
#[inline(always)]
fn per_row<T: Float>(n: usize, m: usize, f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let rows = (CHUNK / m).max(1);
    build_rows(n, rows * m, |start, out| {
        super::simd(
            #[inline(always)]
            || {
                for (i, row) in out.chunks_mut(m).enumerate() {
                    f(start / m + i, row)
                }
            },
        )
    })
}

/// One pass per channel: sums of (x − K) and (x − K)² with K the channel's
/// first value (the shift keeps E[d²] − E[d]² from cancelling), lanes in T,
/// totals in f64.
fn stats_t<T: Float>(x: &[T], l: &Layout) -> (Vec<T>, Vec<T>) {
    let x = dense(x, l);
    let dims @ (n, c, m) = ncm(l);
    let count = (n * m) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let k = x[ch * m];
            let (s1, s2) = super::simd(
                #[inline(always)]
                || channel_sums(dims, ch, &x, &x, |v, _| (v - k, (v - k) * (v - k))),
            );
            let mean = s1 / count;
            (T::from_f64(k.to_f64() + mean), T::from_f64((s2 / count - mean * mean).max(0.0)))
        })
        .unzip()
}

fn apply_t<T: Float>(x: &[T], l: &Layout, mean: &[T], invstd: &[T], w: Option<&[T]>, b: Option<&[T]>) -> Vec<T> {
    let x = dense(x, l);
    let (_, c, m) = ncm(l);
    if m == 0 {
        return vec![T::zero(); x.len()];
    }
    per_row(x.len(), m, |row, yr| {
        let ch = row % c;
        let scale = invstd[ch] * w.map_or(T::one(), |w| w[ch]);
        let shift = b.map_or(T::zero(), |b| b[ch]) - mean[ch] * scale;
        for (o, &v) in yr.iter_mut().zip(&x[row * m..][..m]) {
            o.write(v * scale + shift);
        }
    })
}

/// Returns (dx, dweight, dbias); dweight/dbias are the raw per-channel sums
/// Σdy·x̂ and Σdy (the caller drops them when there is no affine).
fn bwd_t<T: Float>(
    x: &[T],
    lx: &Layout,
    dy: &[T],
    ldy: &Layout,
    mean: &[T],
    invstd: &[T],
    w: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (x, dy) = (dense(x, lx), dense(dy, ldy));
    let dims @ (n, c, m) = ncm(lx);
    let (dw, db): (Vec<T>, Vec<T>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mu = mean[ch];
            // Σdy and Σdy·(x − mean), in the wide-vector build like stats_t.
            let (sdy, sdyx) = super::simd(
                #[inline(always)]
                || channel_sums(dims, ch, &x, &dy, |v, d| (d, d * (v - mu))),
            );
            (T::from_f64(sdyx) * invstd[ch], T::from_f64(sdy))
        })
        .unzip();
    let count = T::from_f64((n * m) as f64);
    let dx = if m == 0 {
        vec![T::zero(); x.len()]
    } else {
        per_row(x.len(), m, |row, dr| {
            let ch = row % c;
            let k = invstd[ch] * w.map_or(T::one(), |w| w[ch]);
            let (mdb, mdw) = (db[ch] / count, dw[ch] / count);
            // Locals, not loads through the captured slices inside the loop
            // (which may alias the output as far as the compiler knows).
            let (mu, is) = (mean[ch], invstd[ch]);
            for ((o, &xv), &dv) in dr.iter_mut().zip(&x[row * m..][..m]).zip(&dy[row * m..][..m]) {
                let xhat = (xv - mu) * is;
                o.write(k * (dv - mdb - xhat * mdw));
            }
        })
    };
    (dx, dw, db)
}

fn f32s(s: Option<&CpuStorage>) -> Option<&[f32]> {
    match s {
        Some(CpuStorage::F32(v)) => Some(v),
        _ => None,
    }
}
fn f64s(s: Option<&CpuStorage>) -> Option<&[f64]> {
    match s {
        Some(CpuStorage::F64(v)) => Some(v),
        _ => None,
    }
}

fn unsupported(op: &'static str, s: &CpuStorage) -> crate::Error {
    crate::Error::UnsupportedDType { op, dtype: s.dtype(), device: crate::Device::Cpu }
}

/// Per-channel (mean, biased variance). Per-channel buffers are dense (C).
pub fn batch_norm_stats(x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, CpuStorage)> {
    match x {
        CpuStorage::F32(v) => {
            let (m, s) = stats_t(v, l);
            Ok((CpuStorage::F32(m), CpuStorage::F32(s)))
        }
        CpuStorage::F64(v) => {
            let (m, s) = stats_t(v, l);
            Ok((CpuStorage::F64(m), CpuStorage::F64(s)))
        }
        other => Err(unsupported("batch_norm", other)),
    }
}

/// y = (x - mean) · invstd · w + b. All per-channel operands are dense (C)
/// and of x's dtype (checked by the caller).
pub fn batch_norm_apply(
    x: &CpuStorage,
    l: &Layout,
    mean: &CpuStorage,
    invstd: &CpuStorage,
    w: Option<&CpuStorage>,
    b: Option<&CpuStorage>,
) -> Result<CpuStorage> {
    match (x, mean, invstd) {
        (CpuStorage::F32(x), CpuStorage::F32(m), CpuStorage::F32(i)) => {
            Ok(CpuStorage::F32(apply_t(x, l, m, i, f32s(w), f32s(b))))
        }
        (CpuStorage::F64(x), CpuStorage::F64(m), CpuStorage::F64(i)) => {
            Ok(CpuStorage::F64(apply_t(x, l, m, i, f64s(w), f64s(b))))
        }
        (other, ..) => Err(unsupported("batch_norm", other)),
    }
}

pub fn batch_norm_bwd(
    x: &CpuStorage,
    lx: &Layout,
    dy: &CpuStorage,
    ldy: &Layout,
    mean: &CpuStorage,
    invstd: &CpuStorage,
    w: Option<&CpuStorage>,
) -> Result<(CpuStorage, CpuStorage, CpuStorage)> {
    match (x, dy, mean, invstd) {
        (CpuStorage::F32(x), CpuStorage::F32(d), CpuStorage::F32(m), CpuStorage::F32(i)) => {
            let (a, b, c) = bwd_t(x, lx, d, ldy, m, i, f32s(w));
            Ok((CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)))
        }
        (CpuStorage::F64(x), CpuStorage::F64(d), CpuStorage::F64(m), CpuStorage::F64(i)) => {
            let (a, b, c) = bwd_t(x, lx, d, ldy, m, i, f64s(w));
            Ok((CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)))
        }
        (other, ..) => Err(unsupported("batch_norm_bwd", other)),
    }
}
