//! The f32 kernels (GEMM paths, image-batched convolutions) against the
//! same ops in f64: the gradient property tests run in f64 and would not
//! see a wrong f32-only fast path. batch_norm's fused sums are also checked
//! against composed ops, since its f64 path shares the same code.

use kiln::tensor::testing::strategies::{conv_transpose2d_case, conv2d_case, randn};
use kiln::{DType, Tensor, Var};
use proptest::prelude::*;

use crate::common::assert_close;

fn f32_vs_f64(what: &str, f: impl Fn(&[Tensor]) -> kiln::Result<Tensor>, inputs: &[Tensor]) {
    let run = |dtype: DType| -> (Vec<f64>, Vec<Vec<f64>>) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::new(&t.to_dtype(dtype).unwrap()).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts).unwrap();
        let gy = randn(y.shape(), 99).to_dtype(dtype).unwrap();
        let g = y.backward_with(&gy, false).unwrap();
        (y.to_vec_f64(), vars.iter().map(|v| g.get(v).unwrap().to_vec_f64()).collect())
    };
    let ((y32, g32), (y64, g64)) = (run(DType::F32), run(DType::F64));
    let scale = |v: &[f64]| v.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
    assert_close(&format!("{what}: output"), &y32, &y64, 1e-5 * scale(&y64), 1e-4);
    for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
        assert_close(&format!("{what}: grad {i}"), a, b, 1e-5 * scale(b), 1e-4);
    }
}

#[test]
fn matmul_f32_across_block_edges() {
    // Odd shapes, one-element edges, deep and wide operands, column blocks
    // that end inside a 48-wide tile (20×200: 112 + 88 columns).
    for &(m, k, n) in
        &[(1, 1, 1), (13, 300, 33), (25, 513, 70), (12, 256, 32), (3, 40, 1100), (40, 3, 5), (20, 70, 200)]
    {
        let a = randn(&[m, k], 1);
        let b = randn(&[k, n], 2);
        f32_vs_f64(&format!("matmul {m}x{k}x{n}"), |t| t[0].matmul(&t[1]), &[a, b]);
        let bt = randn(&[n, k], 3);
        f32_vs_f64(&format!("matmul transposed {m}x{k}x{n}"), |t| t[0].matmul(&t[1].t()?), &[randn(&[m, k], 4), bt]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv_f32_matches_f64(case in conv2d_case(9), seed in any::<u64>()) {
        let p = case.params;
        f32_vs_f64("conv2d", |t| t[0].conv2d(&t[1], None, p), &[randn(&case.input, seed), randn(&case.weight, seed ^ 1)]);
    }

    #[test]
    fn conv_transpose_f32_matches_f64(case in conv_transpose2d_case(6), seed in any::<u64>()) {
        let p = case.params;
        f32_vs_f64("conv_transpose2d", |t| t[0].conv_transpose2d(&t[1], None, p), &[randn(&case.input, seed), randn(&case.weight, seed ^ 1)]);
    }
}

#[test]
fn dcgan_sized_conv_f32_matches_f64() {
    // A block of several images per GEMM (small feature maps) and deep K.
    let p = kiln::tensor::Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    f32_vs_f64(
        "conv2d 8x64x8x8 -> 96",
        |t| t[0].conv2d(&t[1], None, p),
        &[randn(&[8, 64, 8, 8], 1), randn(&[96, 64, 4, 4], 2)],
    );
}

#[test]
fn convs_with_one_vector_rows_f32_match_f64() {
    // Rows of 16 outputs (one AVX-512 vector per row in im2col/col2im),
    // stride 2 and stride 1 with groups, K past one GEMM depth block.
    let p = kiln::tensor::Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    f32_vs_f64(
        "conv2d 3x32x32x32 -> 20, k4 s2",
        |t| t[0].conv2d(&t[1], None, p),
        &[randn(&[3, 32, 32, 32], 5), randn(&[20, 32, 4, 4], 6)],
    );
    let p = kiln::tensor::Conv2dParams { padding: [1, 1], groups: 2, ..Default::default() };
    f32_vs_f64(
        "conv2d 3x8x16x16 -> 6, k3 groups 2",
        |t| t[0].conv2d(&t[1], None, p),
        &[randn(&[3, 8, 16, 16], 7), randn(&[6, 4, 3, 3], 8)],
    );
}

#[test]
fn convs_packed_from_the_input_f32_match_f64() {
    // Forwards whose GEMM packs B straight from the input (stride_w ≤ 2,
    // rows of ≥ 8 outputs, not the stride-1 shifted-rows path): rows of 8
    // (two per permute, padding on either side), 16, 20 and 33 (split at 16
    // lanes, panels crossing rows and images), stride 1 on small maps,
    // unequal strides, dilation, groups, and K past one GEMM depth block;
    // a kernel row whose taps share their loads (the 4×4 stride-2 rows)
    // and ones too wide to (a 3-wide kernel over 16 stride-2 outputs, dilation).
    use kiln::tensor::Conv2dParams;
    let s = |stride: [usize; 2], padding: [usize; 2]| Conv2dParams { stride, padding, ..Default::default() };
    for (x, w, p) in [
        ([3, 5, 16, 16], [7, 5, 4, 4], s([2, 2], [1, 1])),
        ([2, 3, 15, 17], [4, 3, 3, 3], s([2, 2], [2, 1])),
        ([2, 4, 32, 32], [6, 4, 4, 4], s([2, 2], [1, 1])),
        ([1, 3, 9, 40], [5, 3, 3, 3], s([1, 2], [1, 1])),
        ([2, 2, 12, 66], [3, 2, 2, 2], s([3, 2], [0, 0])),
        ([3, 6, 10, 9], [4, 6, 3, 3], s([1, 1], [1, 1])),
        ([2, 40, 8, 16], [8, 40, 4, 4], s([2, 2], [1, 1])),
        ([2, 4, 20, 26], [6, 2, 3, 3], Conv2dParams { stride: [2, 2], padding: [2, 2], dilation: [2, 2], groups: 2 }),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 11), randn(&w, 12)]);
    }
}

#[test]
fn weight_gradients_gathered_from_the_input_f32_match_f64() {
    // Weight gradients of 192+ column-matrix rows whose 16-position chunks
    // are whole output rows (ow = 16, 32) or row pairs (ow = 8) gather the
    // column matrix straight into the GEMM's left operand: two images
    // (blocks summed in order), groups, a 5-wide kernel (the second task
    // starts mid kernel row, and its last panel is short), dilation,
    // stride 1 along a row.
    use kiln::tensor::Conv2dParams;
    let p = |stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize| Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    };
    for (x, w, p) in [
        ([2, 16, 32, 32], [5, 16, 4, 4], p([2, 2], [1, 1], [1, 1], 1)),
        ([1, 24, 9, 34], [3, 24, 3, 3], p([2, 1], [0, 0], [1, 1], 1)),
        ([2, 48, 16, 16], [6, 24, 3, 3], p([2, 2], [1, 1], [1, 1], 2)),
        ([2, 10, 32, 32], [4, 10, 5, 5], p([2, 2], [2, 2], [1, 1], 1)),
        ([1, 12, 32, 32], [4, 12, 4, 4], p([2, 2], [3, 3], [2, 2], 1)),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 13), randn(&w, 14)]);
    }
}

#[test]
fn input_gradients_by_phases_f32_match_f64() {
    // At stride 2 along rows, input gradients (conv_transpose2d forwards)
    // with ≥ 16 channels per group and ≥ 32-wide inputs run as one
    // stride-1 GEMM per phase over a padded dy, interleaved into dx: odd
    // sizes (phases of unequal length), stride 1 and 3 down the rows, groups,
    // no padding (no shared zero column), a 5-wide kernel; and
    // conv_transpose2d with output_padding (a dx row no dy reaches).
    use kiln::tensor::{Conv2dParams, ConvTranspose2dParams};
    let p = |stride: [usize; 2], padding: [usize; 2], groups: usize| Conv2dParams {
        stride,
        padding,
        groups,
        ..Default::default()
    };
    for (x, w, p) in [
        ([2, 16, 32, 32], [8, 16, 4, 4], p([2, 2], [1, 1], 1)),
        ([1, 16, 33, 35], [6, 16, 4, 4], p([2, 2], [1, 1], 1)),
        ([1, 16, 10, 32], [4, 16, 3, 3], p([1, 2], [1, 1], 1)),
        ([2, 32, 32, 32], [8, 16, 4, 4], p([2, 2], [1, 1], 2)),
        ([1, 16, 32, 32], [4, 16, 2, 2], p([2, 2], [0, 0], 1)),
        ([1, 16, 32, 34], [4, 16, 5, 5], p([2, 2], [2, 2], 1)),
        ([1, 16, 35, 32], [4, 16, 4, 4], p([3, 2], [1, 1], 1)),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 15), randn(&w, 16)]);
    }
    for (x, w, output_padding) in [([2, 8, 16, 16], [8, 16, 4, 4], [0, 0]), ([1, 8, 16, 17], [8, 16, 4, 4], [1, 1])] {
        let pt = ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], output_padding, ..Default::default() };
        let name = format!("conv_transpose2d {x:?} * {w:?} {pt:?}");
        f32_vs_f64(&name, |t| t[0].conv_transpose2d(&t[1], None, pt), &[randn(&x, 17), randn(&w, 18)]);
    }
}

#[test]
fn stride1_convs_without_im2col_f32_match_f64() {
    // Maps of >= 256 outputs at stride 1 read the GEMM's B rows straight
    // from a padded copy of the image (forward, the input gradient as a
    // forward with flipped weights, and the weight gradient when the column
    // matrix is 192+ rows): padding on one side only, none, dilation with
    // groups, 1x1, a non-square kernel, batch 1.
    use kiln::tensor::Conv2dParams;
    for (x, w, p) in [
        ([2, 6, 20, 18], [5, 6, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
        ([2, 3, 18, 20], [4, 3, 3, 3], Conv2dParams { padding: [0, 2], ..Default::default() }),
        (
            [1, 4, 17, 23],
            [6, 2, 3, 3],
            Conv2dParams { padding: [2, 2], dilation: [2, 2], groups: 2, ..Default::default() },
        ),
        ([3, 8, 16, 16], [7, 8, 1, 1], Conv2dParams::default()),
        ([2, 3, 21, 21], [4, 3, 5, 5], Conv2dParams::default()),
        ([1, 5, 20, 24], [9, 5, 3, 5], Conv2dParams { padding: [1, 2], ..Default::default() }),
        // 192+ column-matrix rows: the weight gradient reads the padded copy
        // too (ow = 17; the next case, ow = 16, gathers it instead).
        ([2, 24, 17, 19], [5, 24, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
        (
            [1, 48, 16, 18],
            [4, 24, 3, 3],
            Conv2dParams { padding: [2, 0], dilation: [2, 1], groups: 2, ..Default::default() },
        ),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 1), randn(&w, 2)]);
    }
    // conv_transpose2d at stride 1 is the input gradient, which at stride 1
    // runs as a forward convolution with flipped weights.
    use kiln::tensor::ConvTranspose2dParams;
    let pt = ConvTranspose2dParams { padding: [1, 2], groups: 2, ..Default::default() };
    let (x, w) = (randn(&[2, 4, 18, 17], 3), randn(&[4, 3, 3, 5], 4));
    f32_vs_f64("conv_transpose2d stride 1", |t| t[0].conv_transpose2d(&t[1], None, pt), &[x.clone(), w.clone()]);
    // output_padding at stride 1 (with dilation) adds rows no output reads:
    // the input gradient falls back to col2im there.
    let pt = ConvTranspose2dParams {
        padding: [1, 2],
        output_padding: [1, 0],
        dilation: [2, 1],
        groups: 2,
        ..Default::default()
    };
    f32_vs_f64("conv_transpose2d stride 1, output_padding", |t| t[0].conv_transpose2d(&t[1], None, pt), &[x, w]);
}

#[test]
fn winograd_convs_f32_match_f64() {
    // 3×3 stride 1 with >= 16 channels a group and rows >= 23 (or 11–16)
    // wide runs as Winograd F(2×2, 3×3): the forward, the input gradient (a
    // forward with flipped weights) and the weight gradient. Odd sizes
    // (dummy tiles), padding 0, 2 and uneven, groups, several tile chunks
    // per image.
    use kiln::tensor::{Conv2dParams, ConvTranspose2dParams};
    for (x, w, p) in [
        ([2, 16, 25, 27], [16, 16, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
        ([1, 32, 30, 26], [32, 16, 3, 3], Conv2dParams { padding: [0, 2], groups: 2, ..Default::default() }),
        ([1, 16, 24, 24], [20, 16, 3, 3], Conv2dParams { padding: [2, 2], ..Default::default() }),
        ([1, 48, 36, 40], [48, 48, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
        // Rows of 8 tiles or fewer: two tile rows per vector.
        ([3, 16, 16, 16], [24, 16, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
        ([2, 20, 15, 13], [16, 20, 3, 3], Conv2dParams { padding: [1, 1], ..Default::default() }),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 1), randn(&w, 2)]);
    }
    let pt = ConvTranspose2dParams { padding: [1, 1], ..Default::default() };
    let (x, w) = (randn(&[2, 24, 26, 28], 3), randn(&[24, 16, 3, 3], 4));
    f32_vs_f64("conv_transpose2d 3x3 stride 1", |t| t[0].conv_transpose2d(&t[1], None, pt), &[x, w]);
}

#[test]
fn winograd_stride2_convs_f32_match_f64() {
    // 4×4 stride 2 with >= 16 channels on both sides runs as Winograd
    // F(2×2, 2×2): the forward over the input's four parities, the input
    // gradient (conv_transpose2d's forward) as four phases. Odd maps
    // (dummy tiles, phases of unequal length), padding 0, 2 and uneven.
    use kiln::tensor::{Conv2dParams, ConvTranspose2dParams};
    let p = |padding| Conv2dParams { stride: [2, 2], padding, ..Default::default() };
    for (x, w, p) in [
        ([3, 16, 16, 16], [24, 16, 4, 4], p([1, 1])),
        ([2, 20, 11, 13], [16, 20, 4, 4], p([0, 2])),
        ([2, 64, 8, 8], [128, 64, 4, 4], p([1, 1])),
        ([5, 16, 4, 4], [16, 16, 4, 4], p([2, 1])),
    ] {
        let name = format!("conv2d {x:?} * {w:?} {p:?}");
        f32_vs_f64(&name, |t| t[0].conv2d(&t[1], None, p), &[randn(&x, 1), randn(&w, 2)]);
    }
    let pt = ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    let (x, w) = (randn(&[2, 32, 7, 8], 3), randn(&[32, 16, 4, 4], 4));
    f32_vs_f64("conv_transpose2d 4x4 stride 2", |t| t[0].conv_transpose2d(&t[1], None, pt), &[x, w]);
}

#[test]
fn wide_stride2_convs_f32_match_f64() {
    // Output rows of 35: the vectorised stride-2 im2col/col2im plus their tails.
    let p = kiln::tensor::Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    let (x, w) = (randn(&[2, 3, 70, 70], 1), randn(&[4, 3, 4, 4], 2));
    f32_vs_f64("conv2d 70x70 stride 2", |t| t[0].conv2d(&t[1], None, p), &[x, w]);
    let pt = kiln::tensor::ConvTranspose2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    let (x, w) = (randn(&[2, 4, 35, 35], 3), randn(&[4, 3, 4, 4], 4));
    f32_vs_f64("conv_transpose2d 35->70 stride 2", |t| t[0].conv_transpose2d(&t[1], None, pt), &[x, w]);
}

#[test]
fn fast_exp_is_within_two_ulp() {
    use kiln::tensor::Float;
    let mut worst = 0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let (got, want) = (x.exp_fast() as f64, (x as f64).exp());
        worst = worst.max((got - want).abs() / want);
        x += 0.0137;
    }
    assert!(worst < 2.5e-7, "max relative error {worst:e}");
    assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
    assert_eq!((-100.0f32).exp_fast(), 0.0);
    assert_eq!(0.0f32.exp_fast(), 1.0);
}

#[test]
fn attention_f32_matches_f64_across_tiles() {
    // 150 queries × 300 keys spans two tiles each way (128 queries × 256
    // keys per tile); the f32 path uses exp_fast.
    let (q, k, v) = (randn(&[2, 150, 8], 1), randn(&[2, 300, 8], 2), randn(&[2, 300, 6], 3));
    for causal in [false, true] {
        f32_vs_f64(
            "attention",
            |t| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, causal, None),
            &[q.clone(), k.clone(), v.clone()],
        );
    }
    let keep = randn(&[150, 300], 4).gt(&Tensor::zeros(&[], DType::F64, kiln::Device::Cpu).unwrap()).unwrap();
    let mask = Tensor::additive_mask(&keep).unwrap();
    let run = |dtype: DType| {
        let c = |t: &Tensor| t.to_dtype(dtype).unwrap();
        Tensor::scaled_dot_product_attention(&c(&q), &c(&k), &c(&v), Some(&c(&mask)), false, None).unwrap().to_vec_f64()
    };
    assert_close("attention with -inf mask", &run(DType::F32), &run(DType::F64), 2e-5, 1e-4);
}

#[test]
fn conv_gradients_do_not_depend_on_the_thread_count() {
    // Resumed runs must stay bit-identical on another machine: the weight
    // gradient (column split for wide column matrices, image partials for
    // narrow ones) and the input gradient, at 1, 2 and 3 threads.
    let s2 = kiln::tensor::Conv2dParams { stride: [2, 2], padding: [1, 1], ..Default::default() };
    let s1 = kiln::tensor::Conv2dParams { padding: [1, 1], ..Default::default() };
    // 4×4 stride 2 with >= 16 channels each side runs as Winograd F(2×2,
    // 2×2) (tile chunks in order, ∂U rows split across tasks); 8 output
    // channels keep the direct paths (32×32 inputs: 16-wide output rows, the
    // gathered weight gradient); the 3×3 stride-1 layer runs as Winograd
    // F(2×2, 3×3) (image ranges summed in order).
    for (c, o, hw, k, p) in
        [(16, 24, 20, 4, s2), (16, 24, 32, 4, s2), (16, 8, 32, 4, s2), (1, 8, 20, 4, s2), (16, 16, 26, 3, s1)]
    {
        let (x, w) = (
            randn(&[6, c, hw, hw], 5).to_dtype(DType::F32).unwrap(),
            randn(&[o, c, k, k], 6).to_dtype(DType::F32).unwrap(),
        );
        let grads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (xv, wv) = (Var::new(&x).unwrap(), Var::new(&w).unwrap());
                let y = xv.as_tensor().conv2d(wv.as_tensor(), None, p).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                (g.get(&xv).unwrap().to_vec::<f32>().unwrap(), g.get(&wv).unwrap().to_vec::<f32>().unwrap())
            })
        };
        let one = grads(1);
        for t in [2, 3] {
            assert!(grads(t) == one, "c={c}: gradients at {t} threads differ from 1 thread");
        }
    }
}

#[test]
fn attention_backward_forms_agree_bit_for_bit() {
    // 6 batches: one task per batch at 1 thread, the split (query-block /
    // key-block) passes at 8 threads. Both must give the same bits, with a
    // mask (and its gradient) or with causal masking.
    let f32 = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let (q, k, v) = (f32(randn(&[6, 150, 8], 1)), f32(randn(&[6, 300, 8], 2)), f32(randn(&[6, 300, 6], 3)));
    let mask = f32(randn(&[6, 150, 300], 4));
    for causal in [false, true] {
        let grads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let vars: Vec<Var> = [&q, &k, &v, &mask].iter().map(|t| Var::new(t).unwrap()).collect();
                let t: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
                let m = (!causal).then_some(t[3]);
                let y = Tensor::scaled_dot_product_attention(t[0], t[1], t[2], m, causal, None).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                vars.iter()
                    .take(if causal { 3 } else { 4 })
                    .map(|v| g.get(v).unwrap().to_vec::<f32>().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert!(grads(1) == grads(8), "causal {causal}: one-pass and split backward differ");
    }
}

/// The output and input gradients of `f` for cotangent `gy` (same dtype).
fn value_and_grads(f: impl Fn(&[Tensor]) -> kiln::Result<Tensor>, inputs: &[Tensor], dtype: DType) -> Vec<Vec<f64>> {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::new(&t.to_dtype(dtype).unwrap()).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    let g = y.backward_with(&randn(y.shape(), 99).to_dtype(dtype).unwrap(), false).unwrap();
    std::iter::once(y.to_vec_f64()).chain(vars.iter().map(|v| g.get(v).unwrap().to_vec_f64())).collect()
}

#[test]
fn batch_norm_matches_composed_ops_on_long_and_short_channels() {
    // The fused kernel (f32 and f64) against mean/var/rsqrt composed in f64.
    // Rows of 16 (lanes carried across many rows before each f64 total), 49
    // (the 8-wide rest and the scalar tail) and 1024 (several totals per
    // channel); the mean of 3 checks the shifted sums do not cancel.
    for &(n, c, h, w) in &[(64, 8, 4, 4), (16, 3, 7, 7), (8, 2, 32, 32)] {
        let x = randn(&[n, c, h, w], 5).affine(2.0, 3.0).unwrap();
        let (g, b) = (randn(&[c], 6), randn(&[c], 7));
        let fused = |t: &[Tensor]| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5);
        let composed = |t: &[Tensor]| {
            let mean = t[0].mean(&[0, 2, 3], true)?;
            let invstd = t[0].var(&[0, 2, 3], false, true)?.affine(1.0, 1e-5)?.rsqrt()?;
            let xhat = t[0].sub(&mean)?.mul(&invstd)?;
            xhat.mul(&t[1].reshape(&[1, c, 1, 1])?)?.add(&t[2].reshape(&[1, c, 1, 1])?)
        };
        let inputs = [x, g, b];
        let want = value_and_grads(composed, &inputs, DType::F64);
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
            for (i, (got, want)) in value_and_grads(fused, &inputs, dtype).iter().zip(&want).enumerate() {
                let scale = want.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
                let what = if i == 0 { "output".to_string() } else { format!("grad {}", i - 1) };
                assert_close(&format!("batch_norm {n}x{c}x{h}x{w} {dtype:?} {what}"), got, want, tol * scale, 0.0);
            }
        }
    }
}

/// group_norm's fused CPU kernels in f32 against f64 (contiguous and
/// channels-last input, with and without the affine), and the f64 kernels
/// against the composed batch_norm-view form the GPUs run.
#[test]
fn group_norm_fused_f32_and_against_the_composed_form() {
    let x = randn(&[3, 6, 5, 7], 11).affine(3.0, 2.0).unwrap();
    let (w, b) = (randn(&[6], 12), randn(&[6], 13));
    let chw_last = randn(&[3, 5, 7, 6], 14).permute(&[0, 3, 1, 2]).unwrap();
    f32_vs_f64(
        "group_norm",
        |t| t[0].group_norm(3, Some(&t[1]), Some(&t[2]), 1e-5),
        &[x.clone(), w.clone(), b.clone()],
    );
    f32_vs_f64("group_norm, no affine", |t| t[0].group_norm(2, None, None, 1e-5), std::slice::from_ref(&x));
    f32_vs_f64("group_norm, strided input", |t| t[0].group_norm(6, Some(&t[1]), None, 1e-5), &[chw_last, w.clone()]);
    // The view form, by hand: batch_norm of (1, N·G, −1), then the affine.
    let fused = x.group_norm(3, Some(&w), Some(&b), 1e-5).unwrap().to_vec_f64();
    let view = x.reshape(&[1, 9, 70]).unwrap().batch_norm(None, None, None, None, true, 0.0, 1e-5).unwrap();
    let by_hand = view
        .reshape(&[3, 6, 5, 7])
        .unwrap()
        .mul(&w.reshape(&[1, 6, 1, 1]).unwrap())
        .unwrap()
        .add(&b.reshape(&[1, 6, 1, 1]).unwrap())
        .unwrap()
        .to_vec_f64();
    assert_close("group_norm vs batch_norm view", &fused, &by_hand, 1e-12, 1e-10);
}
