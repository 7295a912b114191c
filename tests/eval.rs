//! kiln's yardstick (kiln-eval, `eval`): the FID's matrix algebra against
//! closed forms, the shipped classifier against the shipped digits, the
//! scores on known probabilities, PNG grids cut back into their tiles, the
//! held-out split, and `eval` on a run agreeing with the training curve.

use std::sync::atomic::AtomicBool;

use kiln::data::{HELD_OUT_PER_CLASS, load_mnist, scaled_images, shipped_mnist_dir, split};
use kiln::eval::lenet::{FEATURES, LeNetTrainer, SIDE};
use kiln::eval::pixels::{from_png_grid, from_tensor, grid_layout};
use kiln::eval::score::{class_frequencies, class_scores};
use kiln::eval::{Classifier, ClassifierConfig, FeatureStats, frechet_distance, sqrt_psd};
use kiln::gan::Dcgan;
use kiln::tensor::Rng;
use kiln::train::evaluate::{EvalArgs, eval_images, eval_run};
use kiln::train::images::write_image_grid;
use kiln::train::train;
use kiln::{DType, Device, Tensor};

use crate::train::{fresh, request, tiny_dcgan};

fn stats(mean: &[f64], cov: &[f64]) -> FeatureStats {
    FeatureStats::from_parts(100, mean.to_vec(), cov.to_vec()).unwrap()
}

/// Q diag(d) Qᵀ for the rotation by `angle`.
fn rotated(d: [f64; 2], angle: f64) -> Vec<f64> {
    let (c, s) = (angle.cos(), angle.sin());
    vec![c * c * d[0] + s * s * d[1], c * s * (d[0] - d[1]), c * s * (d[0] - d[1]), s * s * d[0] + c * c * d[1]]
}

#[test]
fn sqrt_psd_matches_the_closed_form() {
    // [[2, 1], [1, 2]] has eigenvalues 3 and 1: its root is ((√3 ± 1)/2) on and off the diagonal.
    let r = sqrt_psd(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
    let (on, off) = ((3f64.sqrt() + 1.0) / 2.0, (3f64.sqrt() - 1.0) / 2.0);
    for (got, want) in r.iter().zip([on, off, off, on]) {
        assert!((got - want).abs() < 1e-14, "{r:?}");
    }
    // A rank-deficient PSD matrix has a root too; an indefinite one is refused.
    let r = sqrt_psd(&rotated([4.0, 0.0], 0.3), 2).unwrap();
    let back =
        [r[0] * r[0] + r[1] * r[2], r[0] * r[1] + r[1] * r[3], r[2] * r[0] + r[3] * r[2], r[2] * r[1] + r[3] * r[3]];
    for (b, m) in back.iter().zip(rotated([4.0, 0.0], 0.3)) {
        assert!((b - m).abs() < 1e-12, "{back:?}");
    }
    assert!(sqrt_psd(&[1.0, 2.0, 2.0, 1.0], 2).unwrap_err().to_string().contains("positive semi-definite"));
}

#[test]
fn fid_matches_closed_forms() {
    let a = stats(&[1.0, 2.0], &rotated([4.0, 1.0], 0.7));
    // Identical statistics: 0 (up to rounding).
    assert!(frechet_distance(&a, &a).unwrap() < 1e-12);
    // Commuting covariances (same eigenvectors): ‖Δμ‖² + Σ (√aᵢ − √bᵢ)².
    let b = stats(&[0.0, 0.0], &rotated([9.0, 0.25], 0.7));
    let want = 1.0 + 4.0 + (2.0f64 - 3.0).powi(2) + (1.0f64 - 0.5).powi(2);
    assert!((frechet_distance(&a, &b).unwrap() - want).abs() < 1e-12);
    // Non-commuting 2×2: tr √(Σ₁Σ₂) = √(tr Σ₁Σ₂ + 2 √det Σ₁Σ₂).
    let (s1, s2) = (rotated([4.0, 1.0], 0.0), rotated([3.0, 0.5], 1.1));
    let prod_trace = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    let det = (s1[0] * s1[3] - s1[1] * s1[2]) * (s2[0] * s2[3] - s2[1] * s2[2]);
    let want = 5.0 + 3.5 - 2.0 * (prod_trace + 2.0 * det.sqrt()).sqrt();
    let (x, y) = (stats(&[0.0, 0.0], &s1), stats(&[0.0, 0.0], &s2));
    assert!((frechet_distance(&x, &y).unwrap() - want).abs() < 1e-12);
    // Symmetric.
    assert!((frechet_distance(&x, &y).unwrap() - frechet_distance(&y, &x).unwrap()).abs() < 1e-12);
    assert!((frechet_distance(&a, &b).unwrap() - frechet_distance(&b, &a).unwrap()).abs() < 1e-12);
    // Widths must agree.
    assert!(frechet_distance(&a, &stats(&[0.0], &[1.0])).is_err());
}

#[test]
fn feature_stats_are_numpy_mean_and_unbiased_cov() {
    let f = [1.0f32, 2.0, 3.0, 6.0, 5.0, 1.0];
    let s = FeatureStats::of(&f, 3, 2).unwrap();
    assert_eq!(s.mean, vec![3.0, 3.0]);
    // numpy.cov([[1, 3, 5], [2, 6, 1]]) = [[4, -1], [-1, 7]].
    assert_eq!(s.cov, vec![4.0, -1.0, -1.0, 7.0]);
    assert!(FeatureStats::of(&f[..2], 1, 2).is_err());
}

#[test]
fn scores_of_known_probabilities() {
    let uniform = vec![0.1; 10];
    let one_hot = |k: usize| (0..10).map(|i| if i == k { 1.0f32 } else { 0.0 }).collect::<Vec<_>>();
    // Confident and balanced: score 10, every mode, no histogram KL.
    let balanced: Vec<f32> = (0..100).flat_map(|i| one_hot(i % 10)).collect();
    let s = class_scores(&balanced, &uniform, None);
    assert!((s.classifier_score - 10.0).abs() < 1e-6 && s.modes == 10 && s.class_kl.abs() < 1e-12, "{s:?}");
    assert!((s.confidence - 1.0).abs() < 1e-12 && s.label_accuracy.is_none());
    // One class only: score 1, one mode, KL = ln 10 against uniform data.
    let collapsed: Vec<f32> = (0..50).flat_map(|_| one_hot(3)).collect();
    let s = class_scores(&collapsed, &uniform, None);
    assert!((s.classifier_score - 1.0).abs() < 1e-6 && s.modes == 1, "{s:?}");
    assert!((s.class_kl - 10f64.ln()).abs() < 1e-12);
    // Labels asked for: the fraction classified as asked.
    let labels: Vec<u8> = (0..100).map(|i| if i < 60 { (i % 10) as u8 } else { 0 }).collect();
    let s = class_scores(&balanced, &uniform, Some(&labels));
    assert!((s.label_accuracy.unwrap() - 0.64).abs() < 1e-12, "{s:?}");
    assert_eq!(class_frequencies(&[0, 0, 1, 9]), vec![0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25]);
}

#[test]
fn the_held_out_split_is_the_last_100_of_each_class() {
    let data = load_mnist(&shipped_mnist_dir()).unwrap();
    let s = split(&data.labels);
    assert_eq!((s.train.len(), s.held_out.len()), (9000, 1000));
    for class in 0..10u8 {
        let of = |ix: &[usize]| ix.iter().copied().filter(|&i| data.labels[i] == class).collect::<Vec<_>>();
        let (train, held) = (of(&s.train), of(&s.held_out));
        assert_eq!(held.len(), HELD_OUT_PER_CLASS);
        assert!(train.last().unwrap() < held.first().unwrap(), "class {class}: held-out digits come last");
    }
    // A small class gives a fifth: 30 of each of two classes hold out their last 6.
    let labels: Vec<u8> = (0..60).map(|i| (i % 2) as u8).collect();
    assert_eq!(split(&labels).held_out, (48..60).collect::<Vec<_>>());
}

/// Pixels (28×28 each) and labels.
type Digits = (Vec<u8>, Vec<u8>);

/// The shipped digits as the classifier's input: (training, held-out).
fn shipped_split() -> (Digits, Digits) {
    let (train, held) = load_mnist(&shipped_mnist_dir()).unwrap().split();
    ((train.images, train.labels), (held.images, held.labels))
}

#[test]
fn the_shipped_classifier_matches_its_file_and_the_digits() {
    let c = Classifier::shipped(Device::Cpu).unwrap();
    let ((train, train_labels), (held, held_labels)) = shipped_split();
    // Its stated held-out accuracy is what it scores, and at least 98%.
    let (accuracy, _) = c.net.accuracy(&held, &held_labels).unwrap();
    assert_eq!(accuracy, c.held_out_accuracy);
    assert!(accuracy >= 0.98, "held-out accuracy {accuracy}");
    // The reference statistics are those of its features over the 9,000 training digits.
    let (features, _) = c.net.classify(&train, train_labels.len()).unwrap();
    let again = FeatureStats::of(&features, train_labels.len(), FEATURES).unwrap();
    assert_eq!(again.n, 9000);
    let worst = again.mean.iter().chain(&again.cov).zip(c.reference.mean.iter().chain(&c.reference.cov));
    assert!(worst.map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) < 1e-9);
    assert_eq!(c.class_frequencies, class_frequencies(&train_labels));
}

#[test]
fn held_out_digits_score_near_zero_and_noise_far_away() {
    let c = Classifier::shipped(Device::Cpu).unwrap();
    let (_, (held, labels)) = shipped_split();
    let real = c.score(&held, labels.len(), Some(&labels)).unwrap();
    // Measured: FID1000 of the held-out digits 14.4 (the floor at N = 1000:
    // 1,000 samples of a perfect generator), classifier score 9.79, all 10 modes.
    assert!(real.fid < 20.0, "{}", real.line());
    assert!(real.scores.classifier_score > 9.0 && real.scores.modes == 10, "{}", real.line());
    assert_eq!(real.scores.label_accuracy, Some(c.held_out_accuracy));
    // The same digits as a 32×32 model sees them (bilinear up, as the loader
    // resizes) and as eval brings them back to 28×28: the floor of a 32×32
    // generator. Measured FID1000 25.8, classifier score 9.71.
    let (_, held_set) = load_mnist(&shipped_mnist_dir()).unwrap().split();
    let up = scaled_images(&held_set, &(0..held_set.n).collect::<Vec<_>>(), 32);
    let up = Tensor::from_vec(up, &[held_set.n, 1, 32, 32], Device::Cpu).unwrap();
    let round_trip = c.score(&from_tensor(&up).unwrap(), held_set.n, None).unwrap();
    assert!(round_trip.fid < 35.0, "{}", round_trip.line());
    // Gaussian noise images (clamped to [-1, 1]): measured FID1000 1362, score 1.09.
    let noise = Tensor::randn(&[1000, 1, 28, 28], 0.0, 0.5, DType::F32, Device::Cpu, &mut Rng::new(3)).unwrap();
    let fake = c.score(&from_tensor(&noise).unwrap(), 1000, None).unwrap();
    assert!(fake.fid > 50.0 * real.fid, "noise: {}; digits: {}", fake.line(), real.line());
}

#[test]
fn a_png_grid_is_cut_into_its_tiles() {
    // 10 images of 32×32 in a kiln grid (8 a row, 2-pixel border): the tiles
    // read back are the images as scored directly.
    let images = Tensor::uniform(&[10, 1, 32, 32], -1.0, 1.0, DType::F32, Device::Cpu, &mut Rng::new(1)).unwrap();
    let dir = crate::common::scratch_dir("eval-grid");
    let path = dir.join("grid.png");
    write_image_grid(&path, &images, 8).unwrap();
    assert_eq!(grid_layout(8 * 34 + 2, 2 * 34 + 2, 8, 2), Ok((16, 32)));
    let (tiles, n) = from_png_grid(&path, 8, 2, Some(10)).unwrap();
    assert_eq!(n, 10);
    assert_eq!(tiles, from_tensor(&images).unwrap());
    // The grid's 16 tiles without --n; a layout that does not fit is refused naming the file.
    assert_eq!(from_png_grid(&path, 8, 2, None).unwrap().1, 16);
    let err = from_png_grid(&path, 7, 2, None).unwrap_err().to_string();
    assert!(err.contains("grid.png") && err.contains("7 tiles a row"), "{err}");
    // `eval --images` scores it.
    let args = EvalArgs {
        run: None,
        images: Some(path.clone()),
        n: Some(10),
        seed: 0,
        nrow: 8,
        padding: 2,
        json: Some(dir.join("scores.json")),
        device: "cpu".into(),
    };
    let line = eval_images(&path, &args).unwrap();
    assert!(line.contains("FID10 "), "{line}");
    assert!(std::fs::read_to_string(dir.join("scores.json")).unwrap().contains("\"fid\""));
}

#[test]
fn the_classifiers_first_steps_are_deterministic() {
    let (train, labels) = shipped_split().0;
    let x: Vec<f32> = train[..64 * SIDE * SIDE].iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
    let images = Tensor::from_vec(x, &[64, 1, SIDE, SIDE], Device::Cpu).unwrap();
    let weights = |seed: u64| {
        let mut t = LeNetTrainer::new(ClassifierConfig { lr: 1e-3 }, Device::Cpu, seed).unwrap();
        let mut rng = Rng::new(9);
        let losses: Vec<f64> = (0..3).map(|_| t.train_step(&images, &labels[..64], &mut rng).unwrap().0).collect();
        let w: Vec<Vec<f32>> = t.net.store.named_tensors().iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect();
        (losses, w)
    };
    let (a, b) = (weights(0), weights(0));
    assert_eq!(a, b);
    assert!(a.0[2] < a.0[0], "the loss falls: {:?}", a.0);
    assert_ne!(a.1, weights(1).1);
}

/// `eval RUN --n N --device cpu`.
pub fn run_args(dir: &std::path::Path, n: usize) -> EvalArgs {
    EvalArgs {
        run: Some(dir.to_path_buf()),
        images: None,
        n: Some(n),
        seed: 0,
        nrow: 8,
        padding: 2,
        json: None,
        device: "cpu".into(),
    }
}

#[test]
fn eval_of_a_run_agrees_with_its_training_curve() {
    let dir = fresh("eval-dcgan");
    let mut req = request(&tiny_dcgan(), &dir, 4);
    req.run.eval_n = 40;
    train::<Dcgan>(&req, &AtomicBool::new(false)).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let fid_col = header.iter().position(|h| *h == "fid").unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    let args = run_args(&dir, 40);
    let line = eval_run::<Dcgan>(&dir, &args).unwrap();
    assert!(line.contains("FID40 ") && line.contains("at step 4"), "{line}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    let fid = report["samples"]["fid"].as_f64().unwrap();
    // The same samples as the last evaluation in training (metrics.csv keeps 6 decimals).
    assert!((fid - last[fid_col].parse::<f64>().unwrap()).abs() < 1e-5, "{fid} vs {}", last[fid_col]);
    assert_eq!(report["samples"]["n"], 40);
    // DCGAN has no held-out numbers (and eval does not read its data for them).
    assert!(report.get("held_out").is_none(), "{report}");
    assert!(["fid", "fid_time"].iter().all(|p| dir.join(format!("{p}.png")).exists()));
    assert!(eval_run::<Dcgan>(&dir, &EvalArgs { n: Some(1), ..args }).unwrap_err().to_string().contains("--n 1"));
}
