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
    let tmp = path.with_extension("tmp");
    let io = |e| CheckpointError::Io { path: p.clone(), source: e };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&tmp, &bytes).map_err(io)?;
    // Flush to disk before the rename makes it visible.
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
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
    /// naming the first tensor that is missing or has another shape/dtype.
    pub fn restore(&self, vs: &VarStore, prefix: &str, path: &Path) -> Result<(), CheckpointError> {
        let bad = |msg: String| CheckpointError::Format { path: path.display().to_string(), msg };
        for (name, t) in vs.named_tensors() {
            let key = format!("{prefix}{name}");
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
