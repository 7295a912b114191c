//! Loading a PyTorch `state_dict` saved with safetensors
//! (`safetensors.torch.save_file(model.state_dict(), path)`; never pickle)
//! into a kiln model whose names follow PyTorch's, as torch's
//! `load_state_dict(strict=…)` does.

use std::path::Path;

use crate::VarStore;
use crate::checkpoint::{CheckpointError, load_checkpoint};

/// What a load matched, as torch's `_IncompatibleKeys`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model tensors copied from the file.
    pub loaded: Vec<String>,
    /// Model tensors the file does not have (left as they were).
    pub missing: Vec<String>,
    /// File tensors the model does not have (ignored).
    pub unexpected: Vec<String>,
}

/// Copies the file's tensors into `vs` by name. Values are converted to the
/// store's dtype (PyTorch's int64 `num_batches_tracked` included), as
/// torch's `copy_` does. A tensor whose shape differs is always an error;
/// with `strict`, so is any missing or unexpected name. Every offending
/// name is listed, and nothing is copied unless the whole load is valid.
pub fn load_state_dict(vs: &VarStore, path: &Path, strict: bool) -> Result<LoadReport, CheckpointError> {
    let file = load_checkpoint(path)?;
    let mut report = LoadReport::default();
    let mut mismatched = Vec::new();
    let mut copies = Vec::new();
    let mut known = std::collections::HashSet::new();
    for (name, t) in vs.named_tensors() {
        known.insert(name.clone());
        match file.tensors.get(&name) {
            None => report.missing.push(name),
            Some(src) if src.shape() != t.shape() => {
                mismatched.push(format!("{name}: {:?} in the file, {:?} in the model", src.shape(), t.shape()))
            }
            Some(src) => {
                copies.push((t, src.to_dtype(vs.dtype())?));
                report.loaded.push(name);
            }
        }
    }
    report.unexpected = file.tensors.keys().filter(|k| !known.contains(*k)).cloned().collect();
    report.unexpected.sort();
    let mut problems = Vec::new();
    if !mismatched.is_empty() {
        problems.push(format!("size mismatch for {}", mismatched.join("; ")));
    }
    if strict && !report.missing.is_empty() {
        problems.push(format!("missing key(s): {}", report.missing.join(", ")));
    }
    if strict && !report.unexpected.is_empty() {
        problems.push(format!("unexpected key(s): {}", report.unexpected.join(", ")));
    }
    if !problems.is_empty() {
        return Err(CheckpointError::Format {
            path: path.display().to_string(),
            msg: format!("cannot load this state_dict: {}", problems.join("; ")),
        });
    }
    for (dst, src) in copies {
        dst.assign(&src)?;
    }
    Ok(report)
}
