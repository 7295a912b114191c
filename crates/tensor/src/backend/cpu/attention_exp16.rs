//! The f32 exp passes over score tiles on AVX-512: `exp_fast`'s
//! reduction and polynomial with fused multiply-adds (the portable form
//! rounds each product, so it cannot contract them), fused with the pass
//! that consumes the exponentials. About half the instructions per
//! element; the exp was a third of the d = 32 forward.
//! Used by attention.rs, the only caller.

use std::arch::x86_64::*;

use super::conv2d::stride2::first;

/// e^x per lane, within 2.5e-7 relative (about 2 ulp) on [−87.3, 88];
/// 0 below (−inf too), e^88 above, NaN stays NaN.
#[inline]
#[target_feature(enable = "avx512f,fma")]
pub fn exp(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0;
    let c = _mm512_set1_ps;
    // min/max return their second operand when either is NaN: x.
    let xc = _mm512_max_ps(c(-87.336_55), _mm512_min_ps(c(88.0), x));
    let t = _mm512_fmadd_ps(xc, c(std::f32::consts::LOG2_E), c(MAGIC));
    let n = _mm512_sub_ps(t, c(MAGIC));
    let r = _mm512_fnmadd_ps(n, c(0.693_359_4), xc);
    let r = _mm512_fnmadd_ps(n, c(-2.121_944_4e-4), r);
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, c(k));
    }
    let e = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, c(1.0)));
    let bits = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127 - 0x4B40_0000));
    let y = _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)));
    _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, c(-87.336_55)), _mm512_setzero_ps())
}

/// row[j] = e^(row[j]·scale − m); returns their sum.
///
/// # Safety
/// The CPU has AVX-512F and FMA.
#[target_feature(enable = "avx512f,fma")]
pub fn exp_sum(row: &mut [f32], scale: f32, m: f32) -> f32 {
    let (s, mv) = (_mm512_set1_ps(scale), _mm512_set1_ps(m));
    let mut acc = _mm512_setzero_ps();
    for j in (0..row.len()).step_by(16) {
        let live = first(row.len() - j);
        let at = row[j..].as_mut_ptr();
        // SAFETY: masked to the row.
        let x = unsafe { _mm512_maskz_loadu_ps(live, at) };
        let y = exp(_mm512_fmsub_ps(x, s, mv));
        // SAFETY: as above.
        unsafe { _mm512_mask_storeu_ps(at, live, y) };
        acc = _mm512_mask_add_ps(acc, live, acc, y);
    }
    _mm512_reduce_add_ps(acc)
}

/// p[j] = e^(p[j] − lse) (P from scores), ds[j] = p[j]·(ds[j] − d).
///
/// # Safety
/// The CPU has AVX-512F and FMA; `ds` is as long as `p`.
#[target_feature(enable = "avx512f,fma")]
pub fn p_and_ds(p: &mut [f32], ds: &mut [f32], lse: f32, d: f32) {
    assert_eq!(p.len(), ds.len());
    let (lv, dv) = (_mm512_set1_ps(lse), _mm512_set1_ps(d));
    for j in (0..p.len()).step_by(16) {
        let live = first(p.len() - j);
        let (pa, da) = (p[j..].as_mut_ptr(), ds[j..].as_mut_ptr());
        // SAFETY: masked to the rows (equal lengths, asserted).
        unsafe {
            let x = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, pa), lv));
            _mm512_mask_storeu_ps(pa, live, x);
            let g = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, da), dv);
            _mm512_mask_storeu_ps(da, live, _mm512_mul_ps(x, g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_and_keeps_the_edges() {
        if !super::super::avx512() {
            return;
        }
        let mut xs: Vec<f32> = (0..12_830).map(|i| -87.33 + i as f32 * 0.0137).filter(|&x| x < 88.0).collect();
        xs.extend([f32::NEG_INFINITY, -100.0, 0.0, f32::NAN]);
        let mut ys = xs.clone();
        // SAFETY: AVX-512 checked above (FMA comes with it).
        let sum = unsafe { exp_sum(&mut ys, 1.0, 0.0) };
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            if x.is_nan() {
                assert!(y.is_nan());
            } else if x < -87.336_55 {
                assert_eq!(y, 0.0, "e^{x}");
            } else {
                assert!(((y as f64 - want) / want).abs() < 2.5e-7, "e^{x} = {y}, want {want}");
            }
        }
        assert!(sum.is_nan());
        let (mut p, mut ds) = (vec![0.5f32; 21], vec![2.0f32; 21]);
        // SAFETY: as above.
        unsafe { p_and_ds(&mut p, &mut ds, 0.5, 1.0) };
        assert!(p.iter().all(|&x| x == 1.0) && ds.iter().all(|&x| x == 1.0));
    }
}
