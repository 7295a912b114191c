//! `cargo xtask data mnist --out DIR`: the full 70,000-digit MNIST from its
//! usual mirrors, each file checked against its published size and SHA-256.
//! Downloads go through the system's `curl` (no TLS stack compiled in); a
//! file is written under a temporary name and renamed only once verified.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// Mirrors tried in order (the original host is often unavailable).
pub const MNIST_MIRRORS: &[&str] =
    &["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];

/// (file, size in bytes, SHA-256) of the four MNIST files.
pub const MNIST_FILES: &[(&str, u64, &str)] = &[
    ("train-images-idx3-ubyte.gz", 9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    ("train-labels-idx1-ubyte.gz", 28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ("t10k-images-idx3-ubyte.gz", 1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    ("t10k-labels-idx1-ubyte.gz", 4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a file's size and SHA-256; the error names the file and both digests.
pub fn verify_sha256(path: &Path, size: u64, sha256: &str) -> Result<()> {
    let data = std::fs::read(path).map_err(|e| DataError::Io { path: path.display().to_string(), source: e })?;
    let bad = |msg: String| DataError::Format { path: path.display().to_string(), msg };
    if data.len() as u64 != size {
        return Err(bad(format!("size {} bytes, expected {size}", data.len())));
    }
    let got = hex(&Sha256::digest(&data));
    if got != sha256 {
        return Err(bad(format!("SHA-256 {got}, expected {sha256}")));
    }
    Ok(())
}

/// Downloads (or re-verifies) the MNIST files into `out`, trying `mirrors`
/// in order. Files already present and valid are kept.
pub fn download_mnist(out: &Path, mirrors: &[&str]) -> Result<()> {
    let io = |e| DataError::Io { path: out.display().to_string(), source: e };
    std::fs::create_dir_all(out).map_err(io)?;
    for &(name, size, sha) in MNIST_FILES {
        let dest = out.join(name);
        if verify_sha256(&dest, size, sha).is_ok() {
            continue;
        }
        let tmp = out.join(format!("{name}.part"));
        let mut failures = vec![];
        for mirror in mirrors {
            let url = format!("{mirror}{name}");
            let status = Command::new("curl")
                .args(["-fsSL", "--retry", "2", "--connect-timeout", "20", "-o"])
                .arg(&tmp)
                .arg(&url)
                .status();
            let outcome = match status {
                Ok(s) if s.success() => verify_sha256(&tmp, size, sha).map_err(|e| e.to_string()),
                Ok(s) => Err(format!("curl exited with {s}")),
                Err(e) => Err(format!("cannot run curl: {e}")),
            };
            match outcome {
                Ok(()) => break,
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        if failures.len() == mirrors.len() {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::Format {
                path: dest.display().to_string(),
                msg: format!("could not download from any mirror (offline?):\n  {}", failures.join("\n  ")),
            });
        }
        std::fs::rename(&tmp, &dest).map_err(io)?;
    }
    Ok(())
}
