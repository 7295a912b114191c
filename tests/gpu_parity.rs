//! GPU backend parity: every op family, forward and gradient, on each GPU
//! backend against the CPU f64 oracle on random shapes — tile-ragged sizes,
//! batch 1, stride/dilation/groups > 1, strided views. Every test exists
//! twice, `<name>_wgpu` (lavapipe in CI) and `<name>_cuda` (the CPU emulation
//! of kernels/*.cu in CI; a real GPU with KILN_TEST_CUDA=gpu). Without a
//! device a test prints SKIP and passes, unless KILN_REQUIRE_WGPU=1 /
//! KILN_REQUIRE_CUDA=1 turn that into a failure.

use kiln::tensor::loss::{self, Reduction};
use kiln::tensor::testing::strategies::{
    attention_case, broadcast_pair, conv_transpose2d_case, conv2d_case, pool2d_case, randn, shape,
};
use kiln::tensor::{BinaryOp, UnaryOp};
use kiln::{DType, Device, Tensor, Var};
use proptest::prelude::*;

/// The CUDA device under test: the CPU emulation of the kernels unless
/// KILN_TEST_CUDA=gpu asks for the real one. None (after a SKIP line) without.
pub fn cuda() -> Option<Device> {
    if std::env::var("KILN_TEST_CUDA").is_ok_and(|v| v == "gpu") {
        eprintln!("testing CUDA on the GPU");
    } else {
        kiln::tensor::cuda::use_emulation();
    }
    match kiln::tensor::cuda::cuda_device(0) {
        Ok(_) => Some(Device::Cuda(0)),
        Err(e) if std::env::var("KILN_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("KILN_REQUIRE_CUDA=1 but no CUDA device: {e}")
        }
        Err(e) => {
            eprintln!("SKIP cuda test: {e}");
            None
        }
    }
}

/// The wgpu device under test, or None (after a SKIP line) without one.
pub fn wgpu() -> Option<Device> {
    kiln::tensor::gpu::allow_software_adapters();
    match kiln::tensor::gpu::wgpu_device(0) {
        Ok(_) => Some(Device::Wgpu(0)),
        Err(e) if std::env::var("KILN_REQUIRE_WGPU").is_ok_and(|v| v == "1") => {
            panic!("KILN_REQUIRE_WGPU=1 but no wgpu device: {e}")
        }
        Err(e) => {
            eprintln!("SKIP wgpu test: {e}");
            None
        }
    }
}

/// An f64 CPU tensor as f32 on `dev` (i64 index tensors keep their dtype).
pub fn to_dev(t: &Tensor, dev: Device) -> Tensor {
    let t = if t.dtype() == DType::F64 { t.to_dtype(DType::F32).unwrap() } else { t.clone() };
    t.to_device(dev).unwrap()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |a, &b| a.max(b.abs()))
}

/// |got − want| ≤ max(tol · (1 + max|want|), slack): f32 sums of many terms
/// lose precision relative to the largest magnitudes, not element by element.
pub fn assert_near(what: &str, got: &Tensor, want: &Tensor, tol: f64, slack: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shape", what);
    let (g, w) = (got.to_vec_f64(), want.to_vec_f64());
    let bound = (tol * (1.0 + max_abs(&w))).max(slack);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a - b).abs() <= bound || (a.is_nan() && b.is_nan()) || a == b;
        prop_assert!(ok, "{}: element {} of {:?}: gpu {} vs cpu {} (bound {:e})", what, i, want.shape(), a, b, bound);
    }
    Ok(())
}

/// max |a − b| over finite pairs (an f32 run's distance from the oracle).
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).filter(|d| d.is_finite()).fold(0.0, f64::max)
}

/// An output and the gradient of each input (None where it has none).
type Run = (Tensor, Vec<Option<Tensor>>);

/// Runs `f` on the CPU in f64 and on `dev` in f32, compares the outputs and
/// the gradients of ⟨f(x), r⟩ (random cotangent r) for every float input.
///
/// The f64 oracle sees the f32-rounded inputs the GPU sees. Where the f32
/// answer is ill-conditioned (batch_norm over two near-equal values: the
/// true input gradient is the eps-sized residue of two large terms), the
/// bound widens to 4× the CPU's own f32 error on the same inputs: the GPU
/// must be as accurate as the CPU backend, never less.
pub fn parity<F>(dev: Device, what: &str, f: F, inputs: &[Tensor], tol: f64) -> Result<(), TestCaseError>
where
    F: Fn(&[Tensor]) -> kiln::Result<Tensor>,
{
    let what = &format!("{what} on {dev:?}");
    let run = |device: Device, dtype: DType| -> kiln::Result<Run> {
        let on = |t: &Tensor| -> kiln::Result<Tensor> {
            let t = if t.dtype() == DType::F64 { t.to_dtype(DType::F32)?.to_dtype(dtype)? } else { t.clone() };
            t.to_device(device)
        };
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|t| {
                let t = on(t)?;
                if t.dtype().is_float() { Var::new(&t).map(|v| v.as_tensor().clone()) } else { Ok(t) }
            })
            .collect::<kiln::Result<_>>()?;
        let y = f(&xs)?;
        if !y.tracks_grad() {
            // Piecewise-constant ops (sign, comparisons) have no gradient.
            return Ok((y, vec![None; xs.len()]));
        }
        let r = on(&randn(y.shape(), 7))?;
        let grads = y.mul(&r)?.sum_all()?.backward()?;
        Ok((y, xs.iter().map(|x| grads.get(x).cloned()).collect()))
    };
    let (want, want_g) =
        run(Device::Cpu, DType::F64).map_err(|e| TestCaseError::fail(format!("{what} on cpu: {e}")))?;
    let (cpu, cpu_g) =
        run(Device::Cpu, DType::F32).map_err(|e| TestCaseError::fail(format!("{what} on cpu f32: {e}")))?;
    let (got, got_g) = run(dev, DType::F32).map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    assert_near(&format!("{what} forward"), &got, &want, tol, 4.0 * max_diff(&cpu, &want))?;
    for (i, ((g, w), c)) in got_g.iter().zip(&want_g).zip(&cpu_g).enumerate() {
        match (g, w, c) {
            (Some(g), Some(w), Some(c)) => {
                assert_near(&format!("{what} gradient of input {i}"), g, w, tol, 4.0 * max_diff(c, w))?
            }
            (None, None, None) => {}
            _ => prop_assert!(false, "{}: gradient of input {} present on some devices only", what, i),
        }
    }
    Ok(())
}

fn channels_last(shape: [usize; 4], seed: u64) -> Tensor {
    let [n, c, h, w] = shape;
    randn(&[n, h, w, c], seed).permute(&[0, 3, 1, 2]).unwrap()
}

/// Each test twice: `$wgpu` on the wgpu device and `$cuda` on the CUDA one,
/// with the device bound to `$dev` in the body.
macro_rules! gpu_proptests {
    ($cases:expr; $(fn $wgpu:ident / $cuda:ident |$dev:ident| ($($args:tt)*) $body:block)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases($cases))]
            $(
                #[test]
                fn $wgpu($($args)*) {
                    if let Some($dev) = wgpu() $body
                }

                #[test]
                fn $cuda($($args)*) {
                    if let Some($dev) = cuda() $body
                }
            )*
        }
    };
}

const UNARY: &[UnaryOp] = &[
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Sqr,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Relu,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Erf,
    UnaryOp::Silu,
    UnaryOp::Gelu,
    UnaryOp::GeluTanh,
    UnaryOp::PowF(3.0),
    UnaryOp::Affine { mul: 1.5, add: -0.25 },
    UnaryOp::LeakyRelu(0.2),
    UnaryOp::Elu(0.7),
    UnaryOp::Softplus { beta: 2.0, threshold: 3.0 },
    UnaryOp::Clamp { min: -0.5, max: 0.8 },
    UnaryOp::Sign,
    UnaryOp::Step,
    UnaryOp::LeakyReluGrad(0.2),
    UnaryOp::SiluGrad,
];

/// Ops whose domain is the positive reals.
const UNARY_POSITIVE: &[UnaryOp] = &[UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt, UnaryOp::Recip, UnaryOp::PowF(-1.5)];

gpu_proptests! {
    12;

    fn elementwise_unary_wgpu / elementwise_unary_cuda |dev| (s in shape(1..=4, 1..=9), seed in any::<u64>()) {
        let x = randn(&s, seed);
        for &op in UNARY {
            parity(dev, op.name(), |t| t[0].unary(op), std::slice::from_ref(&x), 1e-5)?;
        }
        let pos = randn(&s, seed ^ 1).abs().unwrap().affine(1.0, 0.3).unwrap();
        for &op in UNARY_POSITIVE {
            parity(dev, op.name(), |t| t[0].unary(op), std::slice::from_ref(&pos), 1e-5)?;
        }
        // A transposed view goes through the strided path.
        if s.len() >= 2 {
            let xt = x.transpose(0, s.len() - 1).unwrap();
            parity(dev, "tanh of a transposed view", |t| t[0].tanh(), &[xt], 1e-5)?;
        }
    }

    fn elementwise_binary_wgpu / elementwise_binary_cuda |dev| ((a, b) in broadcast_pair(4, 6), seed in any::<u64>()) {
        let x = randn(&a, seed);
        let y = randn(&b, seed ^ 1);
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Maximum, BinaryOp::Minimum] {
            parity(dev, op.name(), |t| t[0].binary(&t[1], op), &[x.clone(), y.clone()], 1e-5)?;
        }
        let yd = y.abs().unwrap().affine(1.0, 0.5).unwrap();
        parity(dev, "div", |t| t[0].div(&t[1]), &[x.clone(), yd.clone()], 1e-5)?;
        parity(dev, "pow", |t| t[0].pow(&t[1]), &[yd, y.clone()], 1e-5)?;
        for op in [BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge] {
            parity(dev, op.name(), |t| t[0].binary(&t[1], op), &[x.clone(), y.clone()], 0.0)?;
        }
        let m = randn(&a, seed ^ 2);
        parity(dev, "where_cond", |t| Tensor::where_cond(&t[0].ge(&t[1])?, &t[1], &t[2]), &[m, x, y], 1e-6)?;
    }

    fn reduce_wgpu / reduce_cuda |dev| (s in shape(1..=4, 1..=7), seed in any::<u64>(), pick in any::<u8>()) {
        let x = randn(&s, seed);
        let dims: Vec<usize> = (0..s.len()).filter(|d| pick >> d & 1 == 1).collect();
        let dims = if dims.is_empty() { vec![0] } else { dims };
        parity(dev, "sum", |t| t[0].sum(&dims, false), std::slice::from_ref(&x), 1e-5)?;
        parity(dev, "mean keepdim", |t| t[0].mean(&dims, true), std::slice::from_ref(&x), 1e-5)?;
        parity(dev, "max", |t| t[0].amax(&dims, false), std::slice::from_ref(&x), 1e-6)?;
        parity(dev, "min", |t| t[0].amin(&dims, true), std::slice::from_ref(&x), 1e-6)?;
        parity(dev, "var", |t| t[0].var(&dims, true, false), std::slice::from_ref(&x), 1e-5)?;
        parity(dev, "logsumexp", |t| t[0].logsumexp(&dims, false), std::slice::from_ref(&x), 1e-5)?;
        let d = dims[0];
        let (cpu_idx, dev_idx) = (x.argmax(d, false).unwrap(), to_dev(&x, dev).argmax(d, false).unwrap());
        prop_assert_eq!(cpu_idx.to_vec_f64(), dev_idx.to_vec_f64());
    }

    fn softmax_wgpu / softmax_cuda |dev| (s in shape(1..=4, 1..=9), seed in any::<u64>(), d in 0usize..4) {
        let d = d % s.len();
        let x = randn(&s, seed);
        parity(dev, "softmax", |t| t[0].softmax(d), std::slice::from_ref(&x), 1e-5)?;
        parity(dev, "log_softmax", |t| t[0].log_softmax(d), &[x], 1e-5)?;
    }

    fn matmul_wgpu / matmul_cuda |dev| (b in 1usize..3, m in 1usize..80, k in 1usize..40, n in 1usize..80, seed in any::<u64>(), tr in any::<bool>()) {
        let x = randn(&[b, m, k], seed);
        // A transposed right operand and a broadcast batch dim.
        let y = if tr { randn(&[n, k], seed ^ 1).t().unwrap() } else { randn(&[1, k, n], seed ^ 1) };
        parity(dev, "matmul", |t| t[0].matmul(&t[1]), &[x, y], 1e-5)?;
    }

    fn conv2d_wgpu / conv2d_cuda |dev| (case in conv2d_case(7), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let b = randn(&[case.weight[0]], seed ^ 2);
        let p = case.params;
        parity(dev, "conv2d", |t| t[0].conv2d(&t[1], Some(&t[2]), p), &[x, w, b], 1e-5)?;
        let xs = channels_last(case.input, seed ^ 3);
        let w = randn(&case.weight, seed ^ 4);
        parity(dev, "conv2d channels-last", |t| t[0].conv2d(&t[1], None, p), &[xs, w], 1e-5)?;
    }

    fn conv_transpose2d_wgpu / conv_transpose2d_cuda |dev| (case in conv_transpose2d_case(6), seed in any::<u64>()) {
        let x = randn(&case.input, seed);
        let w = randn(&case.weight, seed ^ 1);
        let b = randn(&[case.weight[1] * case.params.groups], seed ^ 2);
        let p = case.params;
        parity(dev, "conv_transpose2d", |t| t[0].conv_transpose2d(&t[1], Some(&t[2]), p), &[x, w, b], 1e-5)?;
    }

    fn pool_wgpu / pool_cuda |dev| ((s, p) in pool2d_case(7), seed in any::<u64>()) {
        let x = randn(&s, seed);
        let pa = kiln::tensor::Pool2dParams { dilation: [1, 1], ..p };
        parity(dev, "avg_pool2d", |t| t[0].avg_pool2d(pa), std::slice::from_ref(&x), 1e-5)?;
        parity(dev, "max_pool2d", |t| t[0].max_pool2d(p), std::slice::from_ref(&x), 1e-6)?;
        parity(dev, "upsample_nearest2d", |t| t[0].upsample_nearest2d([s[2] * 2 + 1, s[3] + 2]), &[x], 1e-6)?;
    }

    fn batch_norm_wgpu / batch_norm_cuda |dev| (n in 1usize..4, c in 1usize..5, h in 1usize..6, w in 1usize..6, seed in any::<u64>()) {
        let x = randn(&[n, c, h, w], seed).affine(2.0, 3.0).unwrap();
        let g = randn(&[c], seed ^ 1);
        let b = randn(&[c], seed ^ 2);
        if n * h * w > 1 {
            let f = |t: &[Tensor]| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5);
            parity(dev, "batch_norm train", f, &[x.clone(), g.clone(), b.clone()], 1e-4)?;
            let f = |t: &[Tensor]| t[0].batch_norm(None, None, None, None, true, 0.1, 1e-5);
            parity(dev, "batch_norm train, no affine", f, std::slice::from_ref(&x), 1e-4)?;
        }
        let rm = randn(&[c], seed ^ 3);
        let rv = randn(&[c], seed ^ 4).abs().unwrap().affine(1.0, 0.5).unwrap();
        let f = |t: &[Tensor]| t[0].batch_norm(Some(&t[3]), Some(&t[4]), Some(&t[1]), Some(&t[2]), false, 0.1, 1e-5);
        parity(dev, "batch_norm eval", f, &[x, g, b, rm.detach(), rv.detach()], 1e-4)?;
    }

    fn attention_wgpu / attention_cuda |dev| (case in attention_case(), seed in any::<u64>()) {
        let q = randn(&case.q, seed);
        let k = randn(&case.k, seed ^ 1);
        let v = randn(&case.v, seed ^ 2);
        let (causal, scale) = (case.causal, case.scale);
        match &case.mask {
            Some(ms) => {
                let m = randn(ms, seed ^ 3);
                let f = |t: &[Tensor]| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], Some(&t[3]), causal, scale);
                parity(dev, "attention with mask", f, &[q, k, v, m], 1e-5)?;
            }
            None => {
                let f = |t: &[Tensor]| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], None, causal, scale);
                parity(dev, "attention", f, &[q, k, v], 1e-5)?;
            }
        }
    }

    fn index_ops_wgpu / index_ops_cuda |dev| (outer in 1usize..4, d in 1usize..6, inner in 1usize..5, k in 1usize..7, seed in any::<u64>()) {
        let x = randn(&[outer, d, inner], seed);
        let mut rng = kiln::tensor::Rng::new(seed);
        let mut pick = |n: usize, len: usize| -> Vec<i64> { (0..n).map(|_| (rng.next_u64() % len as u64) as i64).collect() };
        let sel = Tensor::indices(&pick(k, d), &[k], Device::Cpu).unwrap();
        parity(dev, "index_select", |t| t[0].index_select(1, &t[1]), &[x.clone(), sel.clone()], 1e-6)?;
        let src = randn(&[outer, k, inner], seed ^ 1);
        parity(dev, "index_add", |t| t[0].index_add(1, &t[1], d), &[src.clone(), sel], 1e-5)?;
        let g = Tensor::indices(&pick(outer * k * inner, d), &[outer, k, inner], Device::Cpu).unwrap();
        parity(dev, "gather", |t| t[0].gather(1, &t[1]), &[x.clone(), g.clone()], 1e-6)?;
        parity(dev, "scatter_add", |t| t[0].scatter_add(1, &t[1], &[outer, d, inner]), &[src, g], 1e-5)?;
        // cat and narrow: strided writes and reads of regions.
        let y = randn(&[outer, k, inner], seed ^ 2);
        parity(dev, "cat", |t| Tensor::cat(&[&t[0], &t[1]], 1)?.narrow(1, 1, d + k - 1), &[x, y], 1e-6)?;
    }

    fn losses_wgpu / losses_cuda |dev| (n in 1usize..6, c in 2usize..6, seed in any::<u64>()) {
        let x = randn(&[n, c], seed);
        let t = randn(&[n, c], seed ^ 1).sigmoid().unwrap().detach();
        let f = |v: &[Tensor]| loss::binary_cross_entropy_with_logits(&v[0], &v[1], None, None, Reduction::Mean);
        parity(dev, "bce_with_logits", f, &[x.clone(), t.clone()], 1e-5)?;
        parity(dev, "mse", |v| loss::mse_loss(&v[0], &v[1], Reduction::Sum), &[x.clone(), t], 1e-5)?;
        let mut rng = kiln::tensor::Rng::new(seed);
        let labels: Vec<i64> = (0..n).map(|_| (rng.next_u64() % c as u64) as i64).collect();
        let labels = Tensor::indices(&labels, &[n], Device::Cpu).unwrap();
        parity(dev, "cross_entropy", |v| loss::cross_entropy(&v[0], &v[1], loss::CrossEntropy { label_smoothing: 0.1, ..Default::default() }), &[x.clone(), labels], 1e-5)?;
        let p = randn(&[n, c], seed ^ 2).sigmoid().unwrap();
        let t = randn(&[n, c], seed ^ 3).sigmoid().unwrap().detach();
        parity(dev, "bce", |v| loss::binary_cross_entropy(&v[0], &v[1], None, Reduction::Mean), &[p, t.clone()], 1e-5)?;
        parity(dev, "l1", |v| loss::l1_loss(&v[0], &v[1], Reduction::Mean), &[x.clone(), t], 1e-5)?;
        let lv = randn(&[n, c], seed ^ 4);
        parity(dev, "gaussian_kl", |v| loss::gaussian_kl(&v[0], &v[1]), &[x, lv], 1e-5)?;
    }

    fn layer_and_group_norm_wgpu / layer_and_group_norm_cuda |dev| (n in 1usize..3, g in 1usize..3, cg in 1usize..3, h in 1usize..5, seed in any::<u64>()) {
        let c = g * cg;
        let x = randn(&[n, c, h, 3], seed);
        let (w, b) = (randn(&[h, 3], seed ^ 1), randn(&[h, 3], seed ^ 2));
        let f = |t: &[Tensor]| t[0].layer_norm(&[h, 3], Some(&t[1]), Some(&t[2]), 1e-5);
        parity(dev, "layer_norm", f, &[x.clone(), w, b], 1e-4)?;
        let (w, b) = (randn(&[c], seed ^ 3), randn(&[c], seed ^ 4));
        let f = |t: &[Tensor]| t[0].group_norm(g, Some(&t[1]), Some(&t[2]), 1e-5);
        parity(dev, "group_norm", f, &[x, w, b], 1e-4)?;
    }

    // Host f64 LU on every backend; the gradient rules run the device's matmuls.
    fn inverse_and_slogdet_wgpu / inverse_and_slogdet_cuda |dev| (b in 1usize..3, n in 1usize..6, seed in any::<u64>()) {
        let eye = Tensor::from_f64(&(0..n * n).map(|k| if k % (n + 1) == 0 { 3.0 } else { 0.0 }).collect::<Vec<_>>(), &[n, n], DType::F64, Device::Cpu).unwrap();
        let a = randn(&[b, n, n], seed).add(&eye).unwrap();
        parity(dev, "inverse", |t| t[0].inverse(), std::slice::from_ref(&a), 1e-4)?;
        parity(dev, "slogdet", |t| Ok(t[0].slogdet()?.1), &[a], 1e-4)?;
    }
}

/// Second derivatives on the device: ⟨∇ₓ⟨f(x), r⟩, r2⟩ differentiated again.
fn double_backward_parity<F>(dev: Device, what: &str, f: F, inputs: &[Tensor]) -> Result<(), TestCaseError>
where
    F: Fn(&[Tensor]) -> kiln::Result<Tensor>,
{
    let g = |t: &[Tensor]| -> kiln::Result<Tensor> {
        let y = f(t)?;
        let r = randn(y.shape(), 11).to_dtype(t[0].dtype())?.to_device(t[0].device())?;
        let grads = y.mul(&r)?.sum_all()?.backward_create_graph()?;
        let gx = grads.get(&t[0]).expect("input 0 gets a gradient").clone();
        let r2 = randn(gx.shape(), 12).to_dtype(t[0].dtype())?.to_device(t[0].device())?;
        gx.mul(&r2)?.sum_all()
    };
    parity(dev, what, g, inputs, 1e-4)
}

gpu_proptests! {
    6;

    fn double_backward_wgpu / double_backward_cuda |dev| (case in conv2d_case(5), tcase in conv_transpose2d_case(4), seed in any::<u64>()) {
        let (x, w, p) = (randn(&case.input, seed), randn(&case.weight, seed ^ 1), case.params);
        double_backward_parity(dev, "conv2d", |t| t[0].conv2d(&t[1], None, p), &[x, w])?;
        let (x, w, p) = (randn(&tcase.input, seed ^ 2), randn(&tcase.weight, seed ^ 3), tcase.params);
        double_backward_parity(dev, "conv_transpose2d", |t| t[0].conv_transpose2d(&t[1], None, p), &[x, w])?;
        let x = randn(&[3, 2, 3, 2], seed ^ 4);
        let (gm, bt) = (randn(&[2], seed ^ 5), randn(&[2], seed ^ 6));
        let f = |t: &[Tensor]| t[0].batch_norm(None, None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5);
        double_backward_parity(dev, "batch_norm", f, &[x, gm, bt])?;
    }
}
