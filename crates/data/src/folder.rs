//! Any folder of images as a data set (like torchvision's ImageFolder):
//! PNG and JPEG files, searched recursively, labelled by their first-level
//! sub-folder (sorted names → 0, 1, …; files at the top level get 0),
//! center-cropped to a square and resized to the model's size.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::{DataError, ImageSet, Result};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads every image under `dir` as `channels` (1 = grey, 3 = RGB) planes
/// of size × size.
pub fn load_image_folder(dir: &Path, size: usize, channels: usize) -> Result<ImageSet> {
    let io = |e| DataError::Io { path: dir.display().to_string(), source: e };
    let mut files = vec![];
    walk(dir, &mut files).map_err(io)?;
    if files.is_empty() {
        return Err(DataError::Format {
            path: dir.display().to_string(),
            msg: "no .png/.jpg/.jpeg images found".into(),
        });
    }
    if channels != 1 && channels != 3 {
        return Err(DataError::Format {
            path: dir.display().to_string(),
            msg: format!("channels must be 1 or 3, got {channels}"),
        });
    }
    let class_of = |p: &Path| {
        p.strip_prefix(dir)
            .ok()
            .and_then(|r| (r.components().count() > 1).then(|| r.components().next()))
            .flatten()
            .map(|c| c.as_os_str().to_owned())
    };
    let mut classes: Vec<_> = files.iter().filter_map(|p| class_of(p)).collect();
    classes.sort();
    classes.dedup();
    let mut images = Vec::with_capacity(files.len() * channels * size * size);
    let mut labels = Vec::with_capacity(files.len());
    for p in &files {
        let img =
            image::open(p).map_err(|e| DataError::Format { path: p.display().to_string(), msg: e.to_string() })?;
        let side = img.width().min(img.height());
        let cropped = img.crop_imm((img.width() - side) / 2, (img.height() - side) / 2, side, side);
        let resized = cropped.resize_exact(size as u32, size as u32, FilterType::Triangle);
        if channels == 1 {
            images.extend_from_slice(resized.to_luma8().as_raw());
        } else {
            // Interleaved RGB → planar (c, h, w).
            let rgb = resized.to_rgb8();
            for c in 0..3 {
                images.extend(rgb.as_raw().iter().skip(c).step_by(3));
            }
        }
        let label = class_of(p).and_then(|c| classes.iter().position(|k| *k == c)).unwrap_or(0);
        labels.push(label.min(255) as u8);
    }
    Ok(ImageSet { images, labels, n: files.len(), channels, height: size, width: size })
}
