//! `volley warmup plot`: one chart per curve — the daily cap of each provider group against
//! the warm-up day — with a vertical line at each warming IP's day today, as an SVG file
//! (plotters' SVG backend: text is written as SVG text, no fonts needed).

use std::path::Path;
use std::time::SystemTime;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use volley_scheduler::config::{SendConfig, WarmupPolicy};
use volley_warmup::curve::SHIPPED;
use volley_warmup::{day_of, Curve, UtcDay, WarmupState};

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

fn draw(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    curve: &Curve,
    providers: &[String],
    positions: &[(&str, u32)],
    today: UtcDay,
) -> DrawResult {
    let last = curve.last_day().max(1);
    let top = providers
        .iter()
        .filter_map(|p| curve.caps(last, p))
        .map(|c| c.daily)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "curve {}: daily cap per provider group (warm after day {last})",
                curve.name()
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(1u32..last + 1, 0u64..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("warm-up day")
        .y_desc("messages per day")
        .draw()?;
    for (i, provider) in providers.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points = (1..=last).filter_map(|d| curve.caps(d, provider).map(|c| (d, c.daily)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(provider.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    for (ip, day) in positions {
        if *day == 0 || *day > last {
            continue;
        }
        let line = [(*day, 0), (*day, top)];
        chart
            .draw_series(LineSeries::new(line, BLACK.stroke_width(1)))?
            .label(format!("{ip}: day {day} on {today}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        chart.draw_series([Text::new(ip.to_string(), (*day, top), ("sans-serif", 12))])?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}
