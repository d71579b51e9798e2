//! The report's charts as SVG strings (plotters' SVG backend; text is SVG text, no fonts).
//! Every label drawn comes from [`label`], which keeps only characters that are safe inside
//! SVG markup: a log's domain or category names cannot inject markup into the page.

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::aggregate::OUTCOMES;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 360;

/// The colour of each outcome (indexes of [`OUTCOMES`]).
const COLOURS: [RGBColor; 6] = [
    RGBColor(46, 139, 87),   // delivered
    RGBColor(230, 159, 0),   // deferred
    RGBColor(200, 40, 40),   // bounced
    RGBColor(128, 0, 128),   // expired
    RGBColor(90, 90, 90),    // suppressed
    RGBColor(160, 160, 200), // rejected
];

/// `text` with every character outside a conservative set replaced, at most 40 characters.
pub fn label(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .:@_-/#()%=+,".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Width of the legend column right of every chart's plotting area: the legend never covers
/// a bar, a line or a marker.
pub const LEGEND_WIDTH: u32 = 170;

/// What a legend entry shows next to its name.
#[derive(Clone, Copy)]
pub enum Swatch {
    /// A line (a series drawn as a line).
    Line(RGBAColor),
    /// A filled square (a series drawn as bars).
    Block(RGBAColor),
}

/// Draws `entries` top-down in `area` (the column right of a chart): a swatch and a name each.
pub fn side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    top: i32,
    entries: &[(String, Swatch)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, (name, swatch)) in entries.iter().enumerate() {
        let y = top + 18 * i32::try_from(i).unwrap_or(0);
        match swatch {
            Swatch::Line(c) => area.draw(&PathElement::new([(8, y), (26, y)], c.stroke_width(2)))?,
            Swatch::Block(c) => area.draw(&Rectangle::new([(10, y - 5), (22, y + 5)], c.filled()))?,
        }
        area.draw(&Text::new(label(name), (32, y - 6), ("sans-serif", 13)))?;
    }
    Ok(())
}

/// Tick values of a log axis from `lo` to `hi`: 1, 2, 5 per decade over at most three decades,
/// else powers of ten only.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10();
    let steps: &[f64] = if decades <= 3.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let mut ticks = Vec::new();
    let mut power = 10f64.powf(lo.log10().floor());
    while power <= hi {
        for step in steps {
            let v = power * step;
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
        power *= 10.0;
    }
    ticks
}

/// The floor of a log axis of counts: a count of 1 still gets a visible bar or point.
const COUNT_FLOOR: f64 = 0.5;

/// Attempts per second over time, one line per outcome that occurs, on a log axis so that a
/// few deferrals and bounces per second show next to thousands of deliveries. A bucket without
/// any attempt of an outcome breaks that outcome's line.
pub fn timeline(series: &[(f64, [f64; 6])], width_s: u64) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let end = series.last().map_or(1.0, |(x, _)| x + width_s as f64).max(1.0);
        let (scale, unit) = if end > 7200.0 {
            (3600.0, "hours")
        } else if end > 120.0 {
            (60.0, "minutes")
        } else {
            (1.0, "seconds")
        };
        let values = || series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| *v > 0.0);
        let top = values().fold(1.0f64, f64::max) * 1.5;
        let bottom = values().fold(top, f64::min).min(1.0) / 2.0;
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("Attempts per second over time (buckets of {width_s} s, log scale)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(
                0.0..end / scale,
                (bottom..top).log_scale().with_key_points(log_ticks(bottom, top)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("{unit} since the first attempt"))
            .y_desc("attempts / s (log)")
            .y_label_formatter(&|v| crate::numbers::axis(*v))
            .draw()
            .map_err(err)?;
        let mut entries = Vec::new();
        for (i, name) in OUTCOMES.iter().enumerate() {
            if series.iter().all(|(_, v)| v[i] == 0.0) {
                continue;
            }
            let colour = COLOURS[i];
            // Runs of consecutive buckets with attempts, each drawn as one line.
            for run in series.split(|(_, v)| v[i] == 0.0).filter(|run| !run.is_empty()) {
                let points: Vec<(f64, f64)> = run.iter().map(|(x, v)| (x / scale, v[i])).collect();
                if let [single] = points.as_slice() {
                    chart
                        .draw_series([Circle::new(*single, 3, colour.filled())])
                        .map_err(err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                        .map_err(err)?;
                }
            }
            entries.push((name.to_string(), Swatch::Line(colour.to_rgba())));
        }
        side_legend(&side, 60, &entries).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Grouped bars on a log axis: per row one bar per series that occurs anywhere
/// (`series[i]` names `rows[..].1[i]`), each labelled with its count when they fit, so that
/// 11 messages stay visible and readable next to 9,000.
pub fn grouped_bars(title: &str, rows: &[(String, Vec<u64>)], series: &[(&str, RGBColor)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, side) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let shown: Vec<usize> = (0..series.len())
            .filter(|s| rows.iter().any(|(_, v)| v.get(*s).copied().unwrap_or(0) > 0))
            .collect();
        let n = rows.len().max(1);
        let top = rows
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 3.0;
        let names: Vec<String> = rows.iter().map(|(name, _)| label(name)).collect();
        // Integer x (a float axis with chosen label positions has no formatter in plotters):
        // each bar is two units wide, each row `2 * (bars + 1)` (a bar's width of gap), so
        // that every row's centre is a whole number to put its name at.
        let k = i32::try_from(shown.len().max(1)).unwrap_or(1);
        let group = 2 * (k + 1);
        let n_i = i32::try_from(n).unwrap_or(1_000);
        let centres: Vec<i32> = (0..n_i).map(|i| i * group + 1 + k).collect();
        let mut chart = ChartBuilder::on(&plot)
            .caption(format!("{} (log scale)", label(title)), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0..n_i * group).with_key_points(centres),
                (COUNT_FLOOR..top).log_scale().with_key_points(log_ticks(1.0, top)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                usize::try_from(x / group)
                    .ok()
                    .and_then(|i| names.get(i))
                    .cloned()
                    .unwrap_or_default()
            })
            .y_label_formatter(&|v| crate::numbers::axis(*v))
            .y_desc("attempts (log)")
            .draw()
            .map_err(err)?;
        let labelled = n * shown.len() <= 40;
        for (b, s) in (0..k).zip(&shown) {
            let colour = series[*s].1;
            for (i, (_, values)) in (0..n_i).zip(rows) {
                let value = values.get(*s).copied().unwrap_or(0);
                if value == 0 {
                    continue;
                }
                let x = i * group + 1 + 2 * b;
                let mut bar = Rectangle::new([(x, COUNT_FLOOR), (x + 2, value as f64)], colour.filled());
                bar.set_margin(0, 0, 1, 1);
                chart.draw_series([bar]).map_err(err)?;
                if labelled {
                    let style =
                        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
                    let text = Text::new(crate::numbers::thousands(value), (x + 1, value as f64 * 1.08), style);
                    chart.draw_series([text]).map_err(err)?;
                }
            }
        }
        let entries: Vec<(String, Swatch)> = shown
            .iter()
            .map(|s| (series[*s].0.to_string(), Swatch::Block(series[*s].1.to_rgba())))
            .collect();
        side_legend(&side, 60, &entries).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The series of a per-outcome bar chart: every outcome.
pub fn outcome_series() -> Vec<(&'static str, RGBColor)> {
    OUTCOMES.iter().copied().zip(COLOURS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_carry_markup() {
        assert_eq!(label("<script>alert(1)</script>"), "?script?alert(1)?/script?");
        assert_eq!(label("gmail"), "gmail");
        assert_eq!(label(&"x".repeat(100)).len(), 40);
    }

    #[test]
    fn charts_are_svg_with_their_labels() {
        let rows = vec![
            ("gmail".to_string(), vec![3, 1, 0, 0, 0, 0]),
            ("<b>".to_string(), vec![1, 0, 2, 0, 0, 0]),
        ];
        let svg = grouped_bars("Outcomes per provider", &rows, &outcome_series()).expect("chart");
        assert!(
            svg.starts_with("<svg") && svg.contains("gmail") && svg.contains("?b?"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"));
        let svg = timeline(
            &[
                (0.0, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
                (10.0, [2.0, 0.0, 0.5, 0.0, 0.0, 0.0]),
            ],
            10,
        )
        .expect("chart");
        assert!(svg.contains("delivered") && svg.contains("bounced") && !svg.contains("expired"));
    }
}
