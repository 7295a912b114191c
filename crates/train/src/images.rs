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

/// 3×5 pixel glyphs (one row per u8, low 3 bits, left pixel = bit 2) for
/// the characters plots need.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'D' => [6, 5, 5, 5, 6],
        'G' => [7, 4, 5, 5, 7],
        's' => [0, 3, 6, 1, 6],
        't' => [2, 7, 2, 2, 3],
        'e' => [0, 7, 7, 4, 7],
        'p' => [0, 7, 5, 7, 4],
        'l' => [6, 2, 2, 2, 7],
        'o' => [0, 7, 5, 5, 7],
        'a' => [0, 3, 7, 5, 7],
        'v' => [0, 5, 5, 5, 2],
        'g' => [0, 7, 5, 7, 1],
        'n' => [0, 6, 5, 5, 5],
        ' ' => [0; 5],
        _ => return None,
    })
}

/// Draws `text` with its top-left at (x, y), each glyph pixel `scale`² wide.
fn draw_text(
    put: &mut impl FnMut(usize, usize, [u8; 3]),
    x: usize,
    y: usize,
    text: &str,
    colour: [u8; 3],
    scale: usize,
) {
    for (i, c) in text.chars().enumerate() {
        let Some(g) = glyph(c) else { continue };
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(x + (i * 4 + col) * scale + dx, y + row * scale + dy, colour);
                        }
                    }
                }
            }
        }
    }
}

/// A line plot of several series (each a list of y over x = 0..len) on one
/// set of axes with labelled grid lines, the x range in steps, and a legend
/// (`names[i]` in the colour of series i).
pub fn write_plot(path: &Path, series: &[&[f64]], names: &[&str], width: usize, height: usize) -> std::io::Result<()> {
    const COLOURS: [[u8; 3]; 4] = [[214, 39, 40], [31, 119, 180], [44, 160, 44], [148, 103, 189]];
    const INK: [u8; 3] = [60, 60, 60];
    let mut px = vec![255u8; width * height * 3];
    let (l, r, t, b) = (60usize, width - 10, 30usize, height - 30);
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
        let value = hi - (hi - lo) * k as f64 / 4.0;
        draw_text(&mut put, 4, y.saturating_sub(5), &format!("{value:.2}"), INK, 2);
    }
    for y in t..=b {
        put(l, y, [0, 0, 0]);
    }
    for x in l..=r {
        put(x, b, [0, 0, 0]);
    }
    let steps = series.iter().map(|s| s.len()).max().unwrap_or(0);
    draw_text(&mut put, l, b + 8, "0", INK, 2);
    let last = format!("{steps} steps");
    draw_text(&mut put, r.saturating_sub(last.len() * 8), b + 8, &last, INK, 2);
    for (si, name) in names.iter().enumerate().take(series.len()) {
        let x = l + 10 + si * 90;
        for dx in 0..20 {
            for dy in 0..3 {
                put(x + dx, 12 + dy, COLOURS[si % 4]);
            }
        }
        draw_text(&mut put, x + 26, 8, name, COLOURS[si % 4], 2);
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
