//! The report's charts as SVG strings (plotters' SVG backend; text is SVG text, no fonts).
//! Every label drawn comes from [`label`], which keeps only characters that are safe inside
//! SVG markup: a log's domain or category names cannot inject markup into the page.

use anyhow::anyhow;
use plotters::prelude::*;

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

/// The series legend, top right.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

/// Attempts per second over time, one line per outcome that occurs.
pub fn timeline(series: &[(f64, [f64; 6])], width_s: u64) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let end = series.last().map_or(1.0, |(x, _)| x + width_s as f64).max(1.0);
        let (scale, unit) = if end > 7200.0 {
            (3600.0, "hours")
        } else if end > 120.0 {
            (60.0, "minutes")
        } else {
            (1.0, "seconds")
        };
        let top = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0f64, f64::max)
            .max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Attempts per second over time (buckets of {width_s} s)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end / scale, 0.0..top * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("{unit} since the first attempt"))
            .y_desc("attempts / s")
            .draw()
            .map_err(err)?;
        for (i, name) in OUTCOMES.iter().enumerate() {
            if series.iter().all(|(_, v)| v[i] == 0.0) {
                continue;
            }
            let colour = COLOURS[i];
            let points = series.iter().map(|(x, v)| (x / scale, v[i]));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One stacked bar per row, a segment per series (`series[i]` names `rows[..].1[i]`).
pub fn stacked_bars(title: &str, rows: &[(String, Vec<u64>)], series: &[(&str, RGBColor)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = rows.len().max(1) as i32;
        let top = rows
            .iter()
            .map(|(_, v)| v.iter().sum::<u64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let names: Vec<String> = rows.iter().map(|(name, _)| label(name)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(label(title), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), 0u64..top + top / 10 + 1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| names.get(i))
                    .cloned()
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .y_desc("attempts")
            .draw()
            .map_err(err)?;
        for (s, (name, colour)) in series.iter().enumerate() {
            let colour = *colour;
            let bars = rows.iter().enumerate().filter_map(|(i, (_, values))| {
                let below: u64 = values.iter().take(s).sum();
                let value = values.get(s).copied().unwrap_or(0);
                (value > 0).then(|| {
                    let i = i32::try_from(i).unwrap_or(0);
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), below),
                            (SegmentValue::Exact(i + 1), below + value),
                        ],
                        colour.filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    bar
                })
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The series of a per-outcome stacked bar chart: every outcome.
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
        let svg = stacked_bars("Outcomes per provider", &rows, &outcome_series()).expect("chart");
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
