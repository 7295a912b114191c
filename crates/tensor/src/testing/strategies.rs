//! proptest strategies for valid op configurations: every drawn case is a
//! legal call (kernel fits the padded input, groups divide channels, …),
//! biased towards the awkward ones (odd sizes, batch 1, stride and dilation
//! above 1, several groups).

use proptest::prelude::*;

use crate::{Conv2dParams, ConvTranspose2dParams, DType, Device, Pool2dParams, Rng, Tensor};

/// A shape of rank `rank` with each dim in `dims`.
pub fn shape(
    rank: std::ops::RangeInclusive<usize>,
    dims: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<usize>> {
    rank.prop_flat_map(move |r| proptest::collection::vec(dims.clone(), r))
}

/// Two shapes that broadcast together (size-1 dims and missing leading dims).
pub fn broadcast_pair(max_rank: usize, max_dim: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1..=max_rank, 1..=max_dim).prop_flat_map(|full| {
        let r = full.len();
        (Just(full), proptest::collection::vec(any::<bool>(), r), proptest::collection::vec(any::<bool>(), r), 0..=r)
            .prop_map(move |(full, ones_a, ones_b, drop)| {
                let a: Vec<usize> = full.iter().zip(&ones_a).map(|(&d, &o)| if o { 1 } else { d }).collect();
                let b: Vec<usize> = full.iter().zip(&ones_b).map(|(&d, &o)| if o { 1 } else { d }).collect();
                (a, b[drop.min(r - 1)..].to_vec())
            })
    })
}

/// A conv2d call: input (n, c, h, w), weight (o, c/groups, kh, kw).
#[derive(Debug, Clone)]
pub struct ConvCase {
    pub input: [usize; 4],
    pub weight: [usize; 4],
    pub params: Conv2dParams,
    pub bias: bool,
}

/// Valid conv2d cases with channels ≤ 2·max_groups·2, spatial ≤ max_hw.
pub fn conv2d_case(max_hw: usize) -> impl Strategy<Value = ConvCase> {
    (
        1..=2usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        1..=3usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        0..=2usize,
        0..=2usize,
        1..=2usize,
        1..=2usize,
    )
        .prop_flat_map(move |(n, groups, cg, og, kh, kw, sh, sw, ph, pw, dh, dw)| {
            let min_h = (dh * (kh - 1) + 1).saturating_sub(2 * ph).max(1);
            let min_w = (dw * (kw - 1) + 1).saturating_sub(2 * pw).max(1);
            (min_h..=max_hw.max(min_h), min_w..=max_hw.max(min_w), any::<bool>()).prop_map(move |(h, w, bias)| {
                ConvCase {
                    input: [n, groups * cg, h, w],
                    weight: [groups * og, cg, kh, kw],
                    params: Conv2dParams { stride: [sh, sw], padding: [ph, pw], dilation: [dh, dw], groups },
                    bias,
                }
            })
        })
}

/// A conv_transpose2d call: input (n, cin, h, w), weight (cin, cout/groups, kh, kw).
#[derive(Debug, Clone)]
pub struct ConvTransposeCase {
    pub input: [usize; 4],
    pub weight: [usize; 4],
    pub params: ConvTranspose2dParams,
    pub bias: bool,
}

pub fn conv_transpose2d_case(max_hw: usize) -> impl Strategy<Value = ConvTransposeCase> {
    (
        1..=2usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=2usize,
        0..=1usize,
        0..=1usize,
        1..=2usize,
        1..=2usize,
    )
        .prop_flat_map(move |(n, groups, cg, og, kh, kw, sh, sw, ph, pw, dh, dw)| {
            // output_padding < max(stride, dilation), as torch requires.
            (1..=max_hw, 1..=max_hw, 0..sh.max(dh), 0..sw.max(dw), any::<bool>()).prop_filter_map(
                "padding leaves no output",
                move |(h, w, oph, opw, bias)| {
                    let out = |l: usize, s: usize, d: usize, k: usize, op: usize, p: usize| {
                        ((l - 1) * s + d * (k - 1) + op + 1).checked_sub(2 * p).filter(|&v| v > 0)
                    };
                    out(h, sh, dh, kh, oph, ph)?;
                    out(w, sw, dw, kw, opw, pw)?;
                    Some(ConvTransposeCase {
                        input: [n, groups * cg, h, w],
                        weight: [groups * cg, og, kh, kw],
                        params: ConvTranspose2dParams {
                            stride: [sh, sw],
                            padding: [ph, pw],
                            output_padding: [oph, opw],
                            dilation: [dh, dw],
                            groups,
                        },
                        bias,
                    })
                },
            )
        })
}

/// A pooling call on (n, c, h, w).
pub fn pool2d_case(max_hw: usize) -> impl Strategy<Value = ([usize; 4], Pool2dParams)> {
    (
        1..=2usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(move |(n, c, kh, kw, sh, sw, dh, dw, ceil_mode, count_include_pad)| {
            let (min_h, min_w) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1);
            (Just((n, c)), min_h..=max_hw.max(min_h), min_w..=max_hw.max(min_w), 0..=kh / 2, 0..=kw / 2).prop_map(
                move |((n, c), h, w, ph, pw)| {
                    let p = Pool2dParams {
                        kernel: [kh, kw],
                        stride: [sh, sw],
                        padding: [ph, pw],
                        dilation: [dh, dw],
                        ceil_mode,
                        count_include_pad,
                    };
                    ([n, c, h, w], p)
                },
            )
        })
}

/// An attention call: q (b, h, l, e), k (b, h, s, e), v (b, h, s, ev).
#[derive(Debug, Clone)]
pub struct AttentionCase {
    pub q: Vec<usize>,
    pub k: Vec<usize>,
    pub v: Vec<usize>,
    pub causal: bool,
    pub scale: Option<f64>,
    /// Mask shape (broadcastable to (b, h, l, s)) when a mask is used.
    pub mask: Option<Vec<usize>>,
}

pub fn attention_case() -> impl Strategy<Value = AttentionCase> {
    (
        1..=2usize,
        1..=2usize,
        1..=5usize,
        1..=5usize,
        1..=4usize,
        1..=4usize,
        0..=2usize,
        prop_oneof![Just(None), Just(Some(0.3))],
        any::<bool>(),
    )
        .prop_map(|(b, h, l, s, e, ev, mode, scale, head_mask)| {
            let mask = (mode == 2).then(|| if head_mask { vec![b, 1, l, s] } else { vec![l, s] });
            AttentionCase {
                q: vec![b, h, l, e],
                k: vec![b, h, s, e],
                v: vec![b, h, s, ev],
                causal: mode == 1,
                scale,
                mask,
            }
        })
}

/// A random f64 tensor (N(0, 1)) from a proptest-drawn seed.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::randn(shape, 0.0, 1.0, DType::F64, Device::Cpu, &mut rng).expect("cpu randn")
}
