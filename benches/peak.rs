//! This machine's measured FMA peak (f32), so "% of peak" in BENCHMARKS.md
//! is honest on any machine: every rayon thread runs independent chains of
//! vector FMAs (AVX-512 when present, else AVX2+FMA, else scalar).
//! `cargo bench --bench peak`

use std::time::Instant;

use rayon::prelude::*;

const ITERS: u64 = 20_000_000;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    acc.iter().map(|r| _mm512_reduce_add_ps(*r)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut total = 0.0;
    for r in &acc {
        // SAFETY: `out` holds 8 f32, the width of one store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *r) };
        total += out.iter().sum::<f32>();
    }
    total
}

/// (name, FLOPs per iteration, kernel) of the widest FMA this CPU has.
fn kernel() -> (&'static str, u64, fn(u64) -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return ("avx512", 12 * 16 * 2, |n| unsafe { fma_avx512(n) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return ("avx2", 12 * 8 * 2, |n| unsafe { fma_avx2(n) });
        }
    }
    ("scalar", 2, |n| {
        let mut x = 1.0f32;
        for _ in 0..n {
            x = x.mul_add(0.999_999, 1e-7);
        }
        x
    })
}

fn main() {
    let (name, flops_per_iter, f) = kernel();
    let threads = rayon::current_num_threads();
    let mut best = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|_| f(ITERS)).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max((threads as u64 * ITERS * flops_per_iter) as f64 / secs / 1e9);
    }
    println!("peak_fma: {best:.1} GFLOP/s ({name}, {threads} threads, f32, best of 5)");
}
