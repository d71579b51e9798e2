//! `volley warmup plot`: one chart per curve — the daily cap of each provider group against
//! the warm-up day — with a vertical line at each warming IP's day today, as an SVG file
//! (plotters' SVG backend: text is written as SVG text, no fonts needed).
//!
//! Caps grow by orders of magnitude over a curve, so the y-axis is logarithmic (day 1's few
//! hundred stay visible under day 30's hundred thousand) with thousands separators; a cap holds
//! for a whole day, so each group is a step line; the legend sits in a column right of the
//! plot, where it cannot cover a day marker.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use volley_scheduler::config::{SendConfig, WarmupPolicy};
use volley_warmup::curve::SHIPPED;
use volley_warmup::{day_of, Curve, UtcDay, WarmupState};

use crate::html_report::charts::{log_ticks, side_legend, Swatch, LEGEND_WIDTH};
use crate::numbers;

const WIDTH: u32 = 900;
const HEIGHT_PER_CURVE: u32 = 420;

/// Writes the chart of the curves `policy` loaded (every shipped curve when no IP warms up)
/// to `out`.
pub fn write(config: &SendConfig, policy: &WarmupPolicy, now: SystemTime, out: &Path) -> anyhow::Result<bool> {
    let mut curves: Vec<Curve> = policy.curves.iter().cloned().collect();
    if curves.is_empty() {
        for (name, text) in SHIPPED {
            let source = Path::new("(shipped)").join(format!("{name}.toml"));
            curves.push(Curve::parse(text, &source).context("a shipped curve does not load")?);
        }
    }
    let today = UtcDay::of(now);
    // (curve, ip, day today) of every warming IP inside its curve.
    let positions: Vec<(String, String, u32)> = config
        .source_ips
        .iter()
        .zip(&policy.states)
        .filter_map(|(source, (_, state))| match state {
            WarmupState::Warming { curve, start } => {
                Some((curve.clone(), source.address.to_string(), day_of(*start, today)))
            }
            WarmupState::Warm => None,
        })
        .collect();
    let providers = policy.providers.names();
    let mut svg = String::new();
    {
        let height = HEIGHT_PER_CURVE * u32::try_from(curves.len()).unwrap_or(1).max(1);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
        let areas = root.split_evenly((curves.len().max(1), 1));
        for (curve, area) in curves.iter().zip(areas) {
            let here: Vec<(&str, u32)> = positions
                .iter()
                .filter(|(c, _, _)| c == curve.name())
                .map(|(_, ip, day)| (ip.as_str(), *day))
                .collect();
            draw(&area, curve, providers, &here, today).map_err(|e| anyhow!("drawing curve {}: {e}", curve.name()))?;
        }
        root.present().map_err(|e| anyhow!("drawing: {e}"))?;
    }
    std::fs::write(out, svg).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} curve(s))", out.display(), curves.len());
    Ok(true)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// The daily cap of `provider` on each day of `curve`.
fn daily_caps<'a>(curve: &'a Curve, provider: &'a str) -> impl Iterator<Item = (u32, u64)> + 'a {
    (1..=curve.last_day().max(1)).filter_map(move |d| curve.caps(d, provider).map(|c| (d, c.daily)))
}

/// The points of a step line: the cap of day `d` holds from `d` to `d + 1`.
fn steps(caps: impl Iterator<Item = (u32, u64)>) -> Vec<(f64, f64)> {
    caps.flat_map(|(d, cap)| [(f64::from(d), cap as f64), (f64::from(d + 1), cap as f64)])
        .collect()
}

fn draw(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    curve: &Curve,
    providers: &[String],
    positions: &[(&str, u32)],
    today: UtcDay,
) -> DrawResult {
    let last = curve.last_day().max(1);
    let caps: Vec<u64> = providers
        .iter()
        .flat_map(|p| daily_caps(curve, p))
        .map(|(_, c)| c.max(1))
        .collect();
    let top = caps.iter().copied().max().unwrap_or(1) as f64 * 2.0;
    let bottom = caps.iter().copied().min().unwrap_or(1) as f64 / 2.0;
    let (plot, side) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!(
                "curve {}: daily cap per provider group (warm after day {last})",
                curve.name()
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(
            1.0..f64::from(last + 1),
            (bottom..top).log_scale().with_key_points(log_ticks(bottom, top)),
        )?;
    chart
        .configure_mesh()
        .x_desc("warm-up day")
        .y_desc("messages per day (log)")
        .x_label_formatter(&|d| format!("{d:.0}"))
        .y_label_formatter(&|v| numbers::axis(*v))
        .draw()?;
    let mut entries = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(LineSeries::new(
            steps(daily_caps(curve, provider)),
            color.stroke_width(2),
        ))?;
        entries.push((provider.clone(), Swatch::Line(color)));
    }
    for (ip, day) in positions {
        if *day == 0 || *day > last {
            continue;
        }
        // The marker sits in the middle of its day's step.
        let x = f64::from(*day) + 0.5;
        chart.draw_series(LineSeries::new([(x, bottom), (x, top)], BLACK.stroke_width(1)))?;
        chart.draw_series([Text::new(ip.to_string(), (x, top / 1.2), ("sans-serif", 12))])?;
        entries.push((format!("{ip}: day {day}"), Swatch::Line(BLACK.to_rgba())));
    }
    side_legend(&side, 60, &entries)?;
    if !positions.is_empty() {
        side.draw(&Text::new(format!("today: {today}"), (8, 40), ("sans-serif", 13)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_points_hold_each_cap_for_its_whole_day() {
        let points = steps([(1, 500), (2, 1000)].into_iter());
        assert_eq!(points, [(1.0, 500.0), (2.0, 500.0), (2.0, 1000.0), (3.0, 1000.0)]);
    }
}
