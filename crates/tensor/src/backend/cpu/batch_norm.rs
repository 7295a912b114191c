//! batch_norm over (N, C, *): per-channel statistics (one shifted pass,
//! parallel over channels), the normalise-and-affine apply, and the fused
//! backward (one pass of sums, one of dx).

use rayon::prelude::*;

use super::{CpuStorage, build_rows, dense};
use crate::{Float, Layout, Result};

/// (N, C, M) sizes of an input of shape (N, C, spatial...).
fn ncm(l: &Layout) -> (usize, usize, usize) {
    let s = l.shape();
    (s[0], s[1], s[2..].iter().product())
}

/// Calls `f(value)` for every element of channel `c`.
fn channel<T: Float>(x: &[T], (n, c, m): (usize, usize, usize), ch: usize) -> impl Iterator<Item = &[T]> {
    (0..n).map(move |i| &x[(i * c + ch) * m..][..m])
}

/// (Σ u, Σ v) of f(i) = (u, v) for i in 0..len: 32 independent
/// accumulators (two AVX-512 vectors per sum, so the adds overlap), then
/// 8 for a shorter rest (rows of 4×4 maps are 16 long), totalled in f64.
fn row_sums<T: Float>(len: usize, f: impl Fn(usize) -> (T, T)) -> (f64, f64) {
    const WIDE: usize = 32;
    let (mut a, mut b) = ([T::zero(); WIDE], [T::zero(); WIDE]);
    let mut base = 0;
    while base + WIDE <= len {
        for i in 0..WIDE {
            let (u, v) = f(base + i);
            a[i] += u;
            b[i] += v;
        }
        base += WIDE;
    }
    while base + 8 <= len {
        for i in 0..8 {
            let (u, v) = f(base + i);
            a[i] += u;
            b[i] += v;
        }
        base += 8;
    }
    let (mut sa, mut sb) = (0.0, 0.0);
    for i in base..len {
        let (u, v) = f(i);
        sa += u.to_f64();
        sb += v.to_f64();
    }
    for i in 0..WIDE {
        sa += a[i].to_f64();
        sb += b[i].to_f64();
    }
    (sa, sb)
}

/// One pass per channel: sums of (x − K) and (x − K)² with K the channel's
/// first value (the shift keeps E[d²] − E[d]² from cancelling), rows in T,
/// totals in f64.
fn stats_t<T: Float>(x: &[T], l: &Layout) -> (Vec<T>, Vec<T>) {
    let x = dense(x, l);
    let dims @ (n, c, m) = ncm(l);
    let count = (n * m) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let k = x[ch * m];
            let (s1, s2) = super::simd(|| {
                channel(&x, dims, ch)
                    .map(|r| row_sums(r.len(), |i| (r[i] - k, (r[i] - k) * (r[i] - k))))
                    .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
            });
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
    build_rows(x.len(), m, |start, yr| {
        let row = start / m;
        let ch = row % c;
        let scale = invstd[ch] * w.map_or(T::one(), |w| w[ch]);
        let shift = b.map_or(T::zero(), |b| b[ch]) - mean[ch] * scale;
        super::simd(|| {
            for (o, &v) in yr.iter_mut().zip(&x[row * m..][..m]) {
                o.write(v * scale + shift);
            }
        })
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
            let (mut sdy, mut sdyx) = (0.0, 0.0);
            for (xr, dr) in channel(&x, dims, ch).zip(channel(&dy, dims, ch)) {
                // Σdy and Σdy·(x − mean), eight lanes at a time.
                let (a, b) = row_sums(xr.len(), |i| (dr[i], dr[i] * (xr[i] - mean[ch])));
                sdy += a;
                sdyx += b;
            }
            (T::from_f64(sdyx) * invstd[ch], T::from_f64(sdy))
        })
        .unzip();
    let count = T::from_f64((n * m) as f64);
    let dx = if m == 0 {
        vec![T::zero(); x.len()]
    } else {
        build_rows(x.len(), m, |start, dr| {
            let row = start / m;
            let ch = row % c;
            let k = invstd[ch] * w.map_or(T::one(), |w| w[ch]);
            let (mdb, mdw) = (db[ch] / count, dw[ch] / count);
            let xs = &x[row * m..][..m];
            let ds = &dy[row * m..][..m];
            // Locals, not loads through the captured slices inside the loop
            // (which may alias the output as far as the compiler knows).
            let (mu, is) = (mean[ch], invstd[ch]);
            super::simd(|| {
                for ((o, &xv), &dv) in dr.iter_mut().zip(xs).zip(ds) {
                    let xhat = (xv - mu) * is;
                    o.write(k * (dv - mdb - xhat * mdw));
                }
            })
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
