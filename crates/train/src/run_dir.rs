//! A run folder: config.json, metrics.csv (one row per step),
//! samples/*.png, checkpoint.safetensors, and one plot per scalar family.
//! Folders are claimed atomically and never reused by accident.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Result;

/// Files and folders a run writes: what `--overwrite` may replace.
const OUTPUTS: [&str; 4] = ["config.json", "metrics.csv", crate::checkpoint::FILE, "samples"];

/// `YYYYmmdd-HHMMSS` (UTC) of the current time.
fn utc_stamp() -> String {
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
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Creates and returns `<parent>/<model>-<UTC time>`, or `-2`, `-3`, … when
/// that exists: `create_dir` fails if the folder exists, so two runs
/// started in the same second (even in two processes) get two folders.
pub fn claim_default(parent: &Path, model: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let stem = format!("{model}-{}", utc_stamp());
    for n in 1.. {
        let dir = if n == 1 { parent.join(&stem) } else { parent.join(format!("{stem}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display()).into()),
        }
    }
    unreachable!("the loop returns")
}

/// Checks that `--out DIR` may hold a new run: absent, empty, or (with
/// `overwrite`) any folder. Changes nothing.
pub fn check_out(dir: &Path, overwrite: bool) -> Result<()> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--out {}: {e}", dir.display()).into()),
        Ok(empty) if empty || overwrite => Ok(()),
        Ok(_) => {
            let what = if dir.join("config.json").exists() { "a run" } else { "files" };
            Err(format!(
                "--out {}: the folder holds {what}; continue that run with --resume {0}, choose a new folder, \
                 or pass --overwrite to replace kiln's outputs there",
                dir.display()
            )
            .into())
        }
    }
}

/// Creates `--out DIR` after `check_out` passed, removing an earlier run's
/// outputs there when overwriting (other files are kept).
pub fn claim_out(dir: &Path) -> Result<()> {
    let at = |e: std::io::Error, p: &Path| format!("{}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| at(e, dir))?;
    for name in OUTPUTS {
        let p = dir.join(name);
        let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(at(e, &p).into()),
            _ => {}
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| at(e, dir))?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(&p).map_err(|e| at(e, &p))?;
        }
    }
    Ok(())
}

/// Writes `text` to `path` via a temporary file and a rename; the
/// temporary is removed if writing fails (a full disk leaves nothing).
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()).into());
    }
    Ok(())
}

/// metrics.csv: a header and one row per step (numbered from 1). On
/// resume the rows after the checkpoint's step are dropped, so the file
/// matches it, and `seconds` continues from the last kept row.
pub struct Metrics {
    path: PathBuf,
    file: std::fs::File,
    /// Seconds already spent before this command (the last kept row's).
    pub seconds_before: f64,
}

impl Metrics {
    pub fn open(path: &Path, header: &str, resume_step: usize) -> Result<Self> {
        let at = |e: std::io::Error| format!("{}: {e}", path.display());
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => {
                // Rows of a file with other columns (written by an older kiln) move
                // to today's columns by name; a column they lack stays empty.
                let old: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
                let from: Vec<Option<usize>> = header.split(',').map(|h| old.iter().position(|o| *o == h)).collect();
                text.lines()
                    .skip(1)
                    .filter(|l| {
                        l.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= resume_step)
                    })
                    .map(|l| {
                        let cells: Vec<&str> = l.split(',').collect();
                        from.iter()
                            .map(|i| i.and_then(|i| cells.get(i)).copied().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(at(e).into()),
        };
        let seconds_before = kept.last().and_then(|l| l.rsplit(',').next()).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let mut text = format!("{header}\n");
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(at)?;
        Ok(Metrics { path: path.to_path_buf(), file, seconds_before })
    }

    pub fn row(&mut self, fields: &[String]) -> Result<()> {
        writeln!(self.file, "{}", fields.join(",")).map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(())
    }
}

/// For each of `names`, the (x, value) points of a metrics file where both
/// cells hold numbers (evaluation columns are empty on most rows).
pub fn read_series(path: &Path, x: &str, names: &[&str]) -> Result<Vec<Vec<(f64, f64)>>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |n: &str| header.iter().position(|h| *h == n);
    let xi = column(x).ok_or_else(|| format!("{}: no column {x}", path.display()))?;
    let index: Vec<Option<usize>> = names.iter().map(|n| column(n)).collect();
    let mut series = vec![vec![]; names.len()];
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let Some(xv) = fields.get(xi).and_then(|f| f.parse::<f64>().ok()) else { continue };
        for (s, i) in series.iter_mut().zip(&index) {
            if let Some(v) = i.and_then(|i| fields.get(i)).and_then(|f| f.parse::<f64>().ok()) {
                s.push((xv, v));
            }
        }
    }
    Ok(series)
}
