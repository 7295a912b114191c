//! Checkpoints in the safetensors format: named tensors plus string
//! metadata (step, RNG state, config). Written to a temporary file and
//! renamed, so a crash never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::path::Path;

use kiln_tensor::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::VarStore;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    #[error(transparent)]
    Tensor(#[from] kiln_tensor::Error),
}

/// Tensors by name and the metadata strings of one checkpoint file.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

fn to_bytes(t: &Tensor) -> Result<(Dtype, Vec<u8>), CheckpointError> {
    Ok(match t.dtype() {
        DType::F32 => (Dtype::F32, t.to_vec::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F64 => (Dtype::F64, t.to_vec::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::I64 => (Dtype::I64, t.to_vec::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F16 => (Dtype::F16, t.to_vec::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::BF16 => (Dtype::BF16, t.to_vec::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
    })
}

fn from_bytes(dtype: Dtype, shape: &[usize], data: &[u8]) -> Option<Tensor> {
    fn le<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().unwrap())
    }
    let t = match dtype {
        Dtype::F32 => Tensor::from_vec(le::<4>(data).map(f32::from_le_bytes).collect(), shape, Device::Cpu),
        Dtype::F64 => Tensor::from_vec(le::<8>(data).map(f64::from_le_bytes).collect(), shape, Device::Cpu),
        Dtype::I64 => Tensor::from_vec(le::<8>(data).map(i64::from_le_bytes).collect(), shape, Device::Cpu),
        Dtype::F16 => Tensor::from_vec(le::<2>(data).map(half::f16::from_le_bytes).collect(), shape, Device::Cpu),
        Dtype::BF16 => Tensor::from_vec(le::<2>(data).map(half::bf16::from_le_bytes).collect(), shape, Device::Cpu),
        _ => return None,
    };
    t.ok()
}

/// Writes `tensors` and `metadata` to `path` atomically (temp + rename).
pub fn save_checkpoint(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let p = path.display().to_string();
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| to_bytes(t).map(|(d, b)| (n.clone(), d, t.shape().to_vec(), b)))
        .collect::<Result<_, _>>()?;
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Format { path: p.clone(), msg: e.to_string() })?;
    let bytes = safetensors::serialize(views, Some(metadata.clone()))
        .map_err(|e| CheckpointError::Format { path: p.clone(), msg: e.to_string() })?;
    let bytes = sort_metadata(bytes).map_err(|msg| CheckpointError::Format { path: p.clone(), msg })?;
    let tmp = path.with_extension("tmp");
    let io = |e| CheckpointError::Io { path: p.clone(), source: e };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let written = std::fs::write(&tmp, &bytes)
        // Flush to disk before the rename makes it visible.
        .and_then(|()| std::fs::File::open(&tmp).and_then(|f| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // A full disk must not leave a half-written temporary behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// safetensors writes the metadata map in hash order, which differs per
/// process: rewrite the header with its keys sorted, so two identical runs
/// write identical bytes. Tensor entries and the data are left as written.
fn sort_metadata(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let len = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| "short safetensors output")?) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + len]).map_err(|e| format!("safetensors header: {e}"))?;
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta.take()).map_err(|e| format!("safetensors metadata: {e}"))?;
        *meta = serde_json::to_value(sorted).map_err(|e| e.to_string())?;
    }
    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // The data section starts 8-byte aligned, padded with spaces as safetensors does.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::Io { path: p.clone(), source: e })?;
    let bad = |msg: String| CheckpointError::Format { path: p.clone(), msg };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let t = from_bytes(view.dtype(), view.shape(), view.data())
            .ok_or_else(|| bad(format!("tensor {name}: unsupported dtype {:?}", view.dtype())))?;
        tensors.insert(name, t);
    }
    Ok(Checkpoint { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
}

impl Checkpoint {
    /// Copies every parameter and buffer of `vs` from this checkpoint,
    /// naming the first tensor that is missing or has another shape/dtype
    /// (a missing BatchNorm `num_batches_tracked` stays 0).
    pub fn restore(&self, vs: &VarStore, prefix: &str, path: &Path) -> Result<(), CheckpointError> {
        let bad = |msg: String| CheckpointError::Format { path: path.display().to_string(), msg };
        for (name, t) in vs.named_tensors() {
            let key = format!("{prefix}{name}");
            // BatchNorm's count came later: older checkpoints start it at 0, as
            // torch loads a state_dict written before num_batches_tracked.
            if !self.tensors.contains_key(&key) && name.ends_with(".num_batches_tracked") {
                continue;
            }
            let src = self.tensors.get(&key).ok_or_else(|| bad(format!("missing tensor {key}")))?;
            if src.shape() != t.shape() || src.dtype() != t.dtype() {
                return Err(bad(format!(
                    "tensor {key} is {:?} {:?} in the file but the model expects {:?} {:?}",
                    src.dtype(),
                    src.shape(),
                    t.dtype(),
                    t.shape()
                )));
            }
            t.assign(src)?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str, path: &Path) -> Result<&str, CheckpointError> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| CheckpointError::Format {
            path: path.display().to_string(),
            msg: format!("missing metadata {key}"),
        })
    }
}
