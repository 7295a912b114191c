//! What the classifier's class probabilities say of a set of images.

use crate::lenet::{CLASSES, argmax};

/// Classifier score and coverage of n images from their class probabilities.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassScores {
    /// exp E_x[KL(p(y|x) ‖ p(y))] (the Inception Score's formula on this
    /// classifier): 10 for confident, balanced digits, 1 for one class or noise.
    pub classifier_score: f64,
    /// Classes that are the most probable class of at least one image.
    pub modes: usize,
    /// KL(sample class histogram ‖ the data's class frequencies), nats.
    pub class_kl: f64,
    /// Mean of the largest class probability.
    pub confidence: f64,
    /// Images per predicted class.
    pub histogram: Vec<usize>,
    /// Conditional models: the fraction classified as the label asked for.
    pub label_accuracy: Option<f64>,
}

/// `probs`: n rows of 10 probabilities; `data_freq`: the class frequencies
/// of the training data; `labels`: the requested class of each image.
pub fn class_scores(probs: &[f32], data_freq: &[f64], labels: Option<&[u8]>) -> ClassScores {
    let n = probs.len() / CLASSES;
    let rows = || probs.chunks(CLASSES).map(|r| r.iter().map(|&v| (v as f64).max(1e-30)));
    let mut marginal = [0.0f64; CLASSES];
    for row in rows() {
        marginal.iter_mut().zip(row).for_each(|(m, p)| *m += p / n as f64);
    }
    let kl: f64 = rows().map(|row| row.zip(&marginal).map(|(p, m)| p * (p / m).ln()).sum::<f64>()).sum::<f64>();
    let mut histogram = vec![0usize; CLASSES];
    let mut confidence = 0.0;
    for r in probs.chunks(CLASSES) {
        let k = argmax(r);
        histogram[k] += 1;
        confidence += r[k] as f64;
    }
    let class_kl = histogram
        .iter()
        .zip(data_freq)
        .filter(|(h, _)| **h > 0)
        .map(|(&h, &f)| {
            let q = h as f64 / n as f64;
            q * (q / f).ln()
        })
        .sum();
    let label_accuracy = labels.map(|ls| {
        let right = probs.chunks(CLASSES).zip(ls).filter(|(r, y)| argmax(r) == **y as usize).count();
        right as f64 / n.max(1) as f64
    });
    ClassScores {
        classifier_score: (kl / n.max(1) as f64).exp(),
        modes: histogram.iter().filter(|&&h| h > 0).count(),
        class_kl,
        confidence: confidence / n.max(1) as f64,
        histogram,
        label_accuracy,
    }
}

/// Class frequencies of labels 0–9.
pub fn class_frequencies(labels: &[u8]) -> Vec<f64> {
    let mut f = [0.0; CLASSES];
    for &l in labels {
        if (l as usize) < CLASSES {
            f[l as usize] += 1.0;
        }
    }
    let total: f64 = f.iter().sum::<f64>().max(1.0);
    f.iter().map(|v| v / total).collect()
}
