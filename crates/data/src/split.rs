//! The held-out split every model shares: the last 100 images of each
//! class, in file order (1,000 of the 10,000 shipped digits, labelled
//! 0–9). No model trains on it; held-out likelihoods and the classifier's
//! accuracy are measured on it. A class with fewer than 500 images gives a
//! fifth of them, so small image folders keep most of their data.

use crate::ImageSet;

/// Images held out of each class (when the class has at least five times as many).
pub const HELD_OUT_PER_CLASS: usize = 100;

/// Indices into a data set: the images models train on, and the held-out ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub held_out: Vec<usize>,
}

/// The split of a data set with these labels: per class, the last
/// `min(100, count / 5)` images are held out. Both lists are ascending.
pub fn split(labels: &[u8]) -> Split {
    let mut count = [0usize; 256];
    for &l in labels {
        count[l as usize] += 1;
    }
    let keep: Vec<usize> = count.iter().map(|&c| HELD_OUT_PER_CLASS.min(c / 5)).collect();
    // Walk backwards so "the last k of a class" is the first k seen.
    let mut taken = [0usize; 256];
    let mut held = vec![false; labels.len()];
    for (i, &l) in labels.iter().enumerate().rev() {
        if taken[l as usize] < keep[l as usize] {
            taken[l as usize] += 1;
            held[i] = true;
        }
    }
    let (held_out, train): (Vec<usize>, Vec<usize>) = (0..labels.len()).partition(|&i| held[i]);
    Split { train, held_out }
}

impl ImageSet {
    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.channels * self.height * self.width);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            n: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }

    /// (training images, held-out images) by [`split`].
    pub fn split(&self) -> (ImageSet, ImageSet) {
        let s = split(&self.labels);
        (self.subset(&s.train), self.subset(&s.held_out))
    }
}
