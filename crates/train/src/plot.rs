//! Line plots of metrics.csv columns with plotters (bitmap backend): axis
//! titles, ticks, a legend, a log y axis for positive losses. Text uses
//! DejaVu Sans Mono, shipped in assets/ (licence beside it).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::Result;
use crate::images::write_png;
use crate::recipe::Plot;

const FONT: &str = "kiln-sans";
const COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Registers the font once; its outcome is kept, so every plot reports a failure.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), &'static str>> = OnceLock::new();
    let outcome = REGISTERED.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| "the plot font is invalid")
    });
    Ok((*outcome)?)
}

/// FID against steps and against wall time, drawn when the run evaluated.
pub const FID_PLOTS: [Plot; 2] = [
    Plot { name: "fid", title: "FID (kiln LeNet features)", y_label: "FID", x: "step", series: &["fid"], log_y: true },
    Plot {
        name: "fid_time",
        title: "FID against wall time",
        y_label: "FID",
        x: "seconds",
        series: &["fid"],
        log_y: true,
    },
];

/// Mean over the last `window` values at each point (shorter at the start).
pub fn moving_average(v: &[f64], window: usize) -> Vec<f64> {
    let mut sum = 0.0;
    (0..v.len())
        .map(|i| {
            sum += v[i];
            if i >= window {
                sum -= v[i - window];
            }
            sum / (i + 1).min(window) as f64
        })
        .collect()
}

/// Draws `plot` from `series` ((x, value) points per name in
/// `plot.series`), values smoothed over `window` points, to `path`.
pub fn write_plot(path: &Path, plot: &Plot, series: &[Vec<(f64, f64)>], window: usize) -> Result<()> {
    register_font()?;
    let (width, height) = (800u32, 450u32);
    let smoothed: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let ys: Vec<f64> = s.iter().map(|p| p.1).collect();
            s.iter().map(|p| p.0).zip(moving_average(&ys, window)).collect()
        })
        .collect();
    let values = || smoothed.iter().flatten().map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let xs = || smoothed.iter().flatten().map(|p| p.0).filter(|v| v.is_finite());
    let x_lo = xs().fold(f64::INFINITY, f64::min).clamp(0.0, 1.0);
    let x_hi = xs().fold(x_lo + 1.0, f64::max);
    let x_desc = if plot.x == "seconds" { "wall-clock seconds" } else { plot.x };
    // Enough decimals to tell the ticks apart, no more.
    let decimals = match hi - lo {
        s if s >= 20.0 => 0,
        s if s >= 2.0 => 1,
        s if s >= 0.2 => 2,
        _ => 3,
    };
    // A log axis only helps (and only gets ticks) across a decade or more.
    let log = plot.log_y && lo > 0.0 && hi / lo >= 10.0;
    let title = if window > 1 { format!("{} ({window}-point moving average)", plot.title) } else { plot.title.into() };

    let mut pixels = vec![255u8; (width * height * 3) as usize];
    let draw = |pixels: &mut [u8]| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root);
        chart.caption(title, (FONT, 20)).margin(12).x_label_area_size(40).y_label_area_size(70);
        macro_rules! finish {
            ($chart:expr) => {{
                let mut c = $chart;
                c.configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(plot.y_label)
                    .label_style((FONT, 14))
                    .axis_desc_style((FONT, 15))
                    .light_line_style(RGBColor(235, 235, 235))
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| format!("{y:.*}", decimals))
                    .draw()?;
                for (i, (name, s)) in plot.series.iter().zip(&smoothed).enumerate() {
                    let colour = COLOURS[i % COLOURS.len()];
                    let points = s.iter().copied().filter(|(_, v)| v.is_finite());
                    c.draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                        .label(*name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
                }
                c.configure_series_labels()
                    .label_font((FONT, 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()?;
            }};
        }
        if log {
            finish!(chart.build_cartesian_2d(x_lo..x_hi, (lo..hi).log_scale())?);
        } else {
            let pad = (hi - lo) * 0.05;
            finish!(chart.build_cartesian_2d(x_lo..x_hi, (lo - pad)..(hi + pad))?);
        }
        root.present()?;
        Ok(())
    };
    draw(&mut pixels).map_err(|e| format!("{}: drawing the plot: {e}", path.display()))?;
    write_png(path, width as usize, height as usize, true, &pixels)
}
