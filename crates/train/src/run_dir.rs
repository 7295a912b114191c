//! A run folder: config.json, metrics.csv (one row per step), samples/,
//! checkpoint.safetensors, loss.png.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Result;

/// `runs/<model>-YYYYmmdd-HHMMSS` (UTC).
pub fn default_dir(model: &str) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    PathBuf::from(format!("runs/{model}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// Writes `text` to `path` via temp file + rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// metrics.csv: a header and one row per step (numbered from 1); on resume
/// the rows after the checkpoint's step are dropped so the file matches it.
pub struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    pub fn open(path: &Path, header: &str, resume_step: usize) -> Result<Self> {
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| l.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= resume_step))
                .map(str::to_string)
                .collect(),
            Err(_) => vec![],
        };
        let mut text = format!("{header}\n");
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
        write_atomic(path, &text)?;
        Ok(Metrics { file: std::fs::OpenOptions::new().append(true).open(path)? })
    }

    pub fn row(&mut self, fields: &[String]) -> Result<()> {
        writeln!(self.file, "{}", fields.join(","))?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()?;
        Ok(())
    }
}

/// Column `col` of every row of a metrics file.
pub fn read_column(path: &Path, col: usize) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok()))
        .collect()
}
