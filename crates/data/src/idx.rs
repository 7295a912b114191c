//! The IDX format (LeCun's MNIST files): a big-endian magic number whose
//! third byte is the element type (0x08 = u8) and fourth the rank, the dims
//! as big-endian u32, then the data. Gzip'd files are detected by content.

use std::io::Read;
use std::path::Path;

use crate::{DataError, Result};

/// An n-d array of bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::Format { path: path.display().to_string(), msg: msg.into() }
}

/// Reads a u8 IDX file, plain or gzip'd, checking the magic number, the
/// rank and that the data is exactly as long as the dims say.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| DataError::Io { path: path.display().to_string(), source: e })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|msg| format_err(path, msg))
}

/// Parses IDX bytes; the error says what is wrong (the caller adds the path).
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("too short for an IDX header ({} bytes)", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x} is not supported (only 0x08, unsigned bytes)", bytes[2]));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(format!("truncated header: rank {rank} needs {header} bytes, file has {}", bytes.len()));
    }
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let want: usize = dims.iter().product();
    let have = bytes.len() - header;
    if have != want {
        return Err(format!("dims {dims:?} need {want} data bytes but the file has {have} (truncated or wrong file)"));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}
