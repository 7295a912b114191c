//! PNG output: image grids, written atomically.

use std::path::Path;

use crate::Result;
use crate::run_dir::write_atomic;

/// Writes 8-bit grey or RGB pixels as a PNG, atomically (`write_atomic`:
/// a failed write leaves no temporary behind).
pub fn write_png(path: &Path, width: usize, height: usize, rgb: bool, pixels: &[u8]) -> Result<()> {
    let mut bytes = vec![];
    let encoded = {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(if rgb { png::ColorType::Rgb } else { png::ColorType::Grayscale });
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().and_then(|mut w| w.write_image_data(pixels))
    };
    encoded.map_err(|e| format!("{}: {e}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Refuses a grid path that does not end in `.png`: the grids are PNG bytes.
pub fn check_png_path(path: &Path) -> Result<()> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        Ok(())
    } else {
        Err(format!("{}: sample grids are PNG files; name the file *.png", path.display()).into())
    }
}

/// Lays out n images (n, c, s, s) in [-1, 1] as a grid with `cols`
/// columns and a 2-pixel border; grey for c = 1, RGB for c = 3.
pub fn write_grid(path: &Path, images: &[f32], n: usize, c: usize, s: usize, cols: usize) -> Result<()> {
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (w, h) = (cols * (s + pad) + pad, rows * (s + pad) + pad);
    let ch = if c == 3 { 3 } else { 1 };
    let mut px = vec![255u8; w * h * ch];
    for i in 0..n {
        let (oy, ox) = (pad + (i / cols) * (s + pad), pad + (i % cols) * (s + pad));
        for y in 0..s {
            for x in 0..s {
                for k in 0..ch {
                    let v = images[((i * c + k.min(c - 1)) * s + y) * s + x];
                    px[((oy + y) * w + ox + x) * ch + k] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                }
            }
        }
    }
    write_png(path, w, h, ch == 3, &px)
}

/// Writes images (n, c, s, s) in [-1, 1] as a grid, 8 a row (a row per
/// class for class grids of 10). The path must end in `.png`.
pub fn write_image_grid(path: &Path, images: &kiln_tensor::Tensor, cols: usize) -> Result<()> {
    check_png_path(path)?;
    let s = images.shape().to_vec();
    let [n, c, h, w] = s[..] else {
        return Err(format!("{}: samples must be (n, c, h, w), got {s:?}", path.display()).into());
    };
    if h != w {
        return Err(format!("{}: samples must be square, got {h}×{w}", path.display()).into());
    }
    let values = images.to_dtype(kiln_tensor::DType::F32)?.to_vec::<f32>()?;
    write_grid(path, &values, n, c, h, cols)
}
