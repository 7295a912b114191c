//! PNG output: image grids and line plots, written atomically.

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

/// A line plot of several series (each a list of y over x = 0..len) on one
/// set of axes with horizontal grid lines; colours in series order.
pub fn write_plot(path: &Path, series: &[&[f64]], width: usize, height: usize) -> std::io::Result<()> {
    const COLOURS: [[u8; 3]; 4] = [[214, 39, 40], [31, 119, 180], [44, 160, 44], [148, 103, 189]];
    let mut px = vec![255u8; width * height * 3];
    let (l, r, t, b) = (40usize, width - 10, 10usize, height - 30);
    let finite = series.iter().flat_map(|s| s.iter()).copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < width && y < height {
            px[(y * width + x) * 3..][..3].copy_from_slice(&c);
        }
    };
    for k in 0..=4 {
        let y = t + (b - t) * k / 4;
        for x in l..=r {
            put(x, y, [225, 225, 225]);
        }
    }
    for y in t..=b {
        put(l, y, [0, 0, 0]);
    }
    for x in l..=r {
        put(x, b, [0, 0, 0]);
    }
    for (si, s) in series.iter().enumerate() {
        let n = s.len().max(2);
        let mut prev: Option<(f64, f64)> = None;
        for (i, &v) in s.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let x = l as f64 + (r - l) as f64 * i as f64 / (n - 1) as f64;
            let y = b as f64 - (b - t) as f64 * (v - lo) / (hi - lo);
            if let Some((px0, py0)) = prev {
                let steps = ((x - px0).abs().max((y - py0).abs()).ceil() as usize).max(1);
                for k in 0..=steps {
                    let f = k as f64 / steps as f64;
                    put(
                        (px0 + (x - px0) * f).round() as usize,
                        (py0 + (y - py0) * f).round() as usize,
                        COLOURS[si % 4],
                    );
                }
            }
            prev = Some((x, y));
        }
    }
    write_png(path, width, height, true, &px)
}
