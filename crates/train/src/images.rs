//! PNG output: image grids, written atomically.

use std::path::Path;

/// Writes 8-bit grey or RGB pixels as a PNG via temp file + rename.
pub fn write_png(path: &Path, width: usize, height: usize, rgb: bool, pixels: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("png.tmp");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut enc = png::Encoder::new(file, width as u32, height as u32);
        enc.set_color(if rgb { png::ColorType::Rgb } else { png::ColorType::Grayscale });
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(pixels).map_err(std::io::Error::other)?;
    }
    std::fs::rename(tmp, path)
}

/// Lays out n images (n, c, s, s) in [-1, 1] as a grid with `cols`
/// columns and a 2-pixel border; grey for c = 1, RGB for c = 3.
pub fn write_grid(path: &Path, images: &[f32], n: usize, c: usize, s: usize, cols: usize) -> std::io::Result<()> {
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
pub fn write_image_grid(path: &Path, images: &kiln_tensor::Tensor, cols: usize) -> crate::Result<()> {
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(format!("{}: sample grids are PNG files; name the file *.png", path.display()).into());
    }
    let s = images.shape().to_vec();
    let [n, c, h, w] = s[..] else {
        return Err(format!("{}: samples must be (n, c, h, w), got {s:?}", path.display()).into());
    };
    if h != w {
        return Err(format!("{}: samples must be square, got {h}×{w}", path.display()).into());
    }
    let values = images.to_dtype(kiln_tensor::DType::F32)?.to_vec::<f32>()?;
    write_grid(path, &values, n, c, h, cols).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}
