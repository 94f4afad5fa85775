//! The latency-against-rate chart of a side-by-side run: one series per
//! server, offered deliveries per second across, p99 latency up (log
//! scale). Every run is a point; the line joins each rate's worst round.

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One broadcast report, as the generator writes it with `--json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub server: String,
    /// Offered deliveries per second (publications × subscribers).
    pub offered: f64,
    pub p99_ms: f64,
}

/// Reads the server name (the label's first word), the offered rate and
/// the p99 from a broadcast report; None for other reports.
pub fn point(report: &serde_json::Value) -> Option<Point> {
    let server = report["label"].as_str()?.split_whitespace().next()?.to_owned();
    let offered = report["rate"].as_f64()? * report["subscribers"].as_f64()?;
    let p99_ms = report["latency_us"]["p99"].as_f64()? / 1000.0;
    Some(Point { server, offered, p99_ms })
}

/// Draws `points` into an SVG file at `out`.
pub fn draw(points: &[Point], title: &str, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!points.is_empty(), "no broadcast reports to chart");
    let max_x = points.iter().map(|p| p.offered).fold(0.0, f64::max) / 1e6 * 1.1;
    let max_y = points.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 2.0;
    let root = SVGBackend::new(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x, (0.1..max_y).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries per second (millions)")
        .y_desc("p99 publish-to-deliver latency (ms, log)")
        .draw()?;
    let mut servers: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
    for p in points {
        servers.entry(&p.server).or_default().push(p);
    }
    for (i, (server, series)) in servers.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut worst: BTreeMap<u64, f64> = BTreeMap::new();
        for p in &series {
            let w = worst.entry(p.offered as u64).or_insert(0.0);
            *w = w.max(p.p99_ms);
        }
        chart
            .draw_series(LineSeries::new(
                worst.iter().map(|(&x, &y)| (x as f64 / 1e6, y.max(0.1))),
                color.stroke_width(2),
            ))?
            .label(server.to_owned())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(series.iter().map(|p| Circle::new((p.offered / 1e6, p.p99_ms.max(0.1)), 3, color.filled())))?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

/// `--scenario chart`: every report among `inputs` into one chart.
pub fn run(inputs: &[PathBuf], title: &str, out: &Path) -> anyhow::Result<()> {
    let mut points = Vec::new();
    for input in inputs {
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(input)?)?;
        points.extend(point(&report));
    }
    draw(&points, title, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_broadcast_reports_and_skips_others() {
        let report = serde_json::json!({
            "label": "switchyard r2", "rate": 10000, "subscribers": 100, "latency_us": {"p99": 4800}
        });
        assert_eq!(point(&report), Some(Point { server: "switchyard".into(), offered: 1e6, p99_ms: 4.8 }));
        assert_eq!(point(&serde_json::json!({"label": "idle", "connections": 10})), None);
    }

    #[test]
    fn draws_an_svg_with_a_series_per_server() {
        let dir = std::env::temp_dir().join(format!("chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("chart.svg");
        let points = [
            Point { server: "switchyard".into(), offered: 2e5, p99_ms: 2.0 },
            Point { server: "switchyard".into(), offered: 1e6, p99_ms: 5.0 },
            Point { server: "node-ws".into(), offered: 2e5, p99_ms: 600.0 },
        ];
        draw(&points, "test", &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("switchyard") && svg.contains("node-ws"));
        assert!(svg.matches("<circle").count() >= 3);
    }
}
