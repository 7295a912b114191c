//! The numbers of one set of images against the shipped reference.

use crate::fid::{FeatureStats, frechet_distance};
use crate::lenet::{Classifier, FEATURES};
use crate::score::{ClassScores, class_scores};
use crate::{EvalError, Result};

/// What eval.json says of a model's samples (or of any images).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleReport {
    /// Images scored: FID depends on it, compare only at equal n.
    pub n: usize,
    /// Fréchet distance on the classifier's 128 penultimate features to the
    /// reference statistics of the 9,000 shipped training digits.
    pub fid: f64,
    #[serde(flatten)]
    pub scores: ClassScores,
}

impl SampleReport {
    /// The one-line summary commands print.
    pub fn line(&self) -> String {
        let mut s = format!(
            "FID{} {:.2}, classifier score {:.2}, modes {}/10, class KL {:.3}, confidence {:.3}",
            self.n,
            self.fid,
            self.scores.classifier_score,
            self.scores.modes,
            self.scores.class_kl,
            self.scores.confidence
        );
        if let Some(a) = self.scores.label_accuracy {
            s.push_str(&format!(", label accuracy {a:.3}"));
        }
        s
    }
}

impl Classifier {
    /// Scores `n` 8-bit 28×28 images (`pixels` module); `labels` are the
    /// classes a conditional model was asked for.
    pub fn score(&self, pixels: &[u8], n: usize, labels: Option<&[u8]>) -> Result<SampleReport> {
        if n < 2 {
            return Err(EvalError::Argument { op: "eval", msg: format!("FID needs at least 2 images, got {n}") });
        }
        if labels.is_some_and(|l| l.len() != n) {
            return Err(EvalError::Argument {
                op: "eval",
                msg: format!("{n} images but {} labels", labels.map_or(0, <[u8]>::len)),
            });
        }
        let (features, probs) = self.net.classify(pixels, n)?;
        let stats = FeatureStats::of(&features, n, FEATURES)?;
        let fid = frechet_distance(&stats, &self.reference)?;
        Ok(SampleReport { n, fid, scores: class_scores(&probs, &self.class_frequencies, labels) })
    }
}
