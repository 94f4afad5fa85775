//! What a run measured, as a Markdown row and as JSON.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::Duration;

pub struct Report {
    pub label: String,
    pub subscribers: usize,
    pub rate: u64,
    pub payload: usize,
    pub sent: u64,
    /// Deliveries there should have been (each publication times its
    /// audience); None where clients come and go (churn).
    pub expected: Option<u64>,
    pub delivered: u64,
    pub seconds: f64,
    pub server_cpu_seconds: Option<f64>,
    pub server_rss: Option<u64>,
    /// Latency percentiles in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Figures particular to a scenario, added to the JSON as they are.
    pub extra: serde_json::Map<String, Value>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        label: &str,
        subscribers: usize,
        rate: u64,
        payload: usize,
        sent: u64,
        expected: Option<u64>,
        delivered: u64,
        publishing: Duration,
        server_cpu_seconds: Option<f64>,
        server_rss: Option<u64>,
        latency: &Histogram<u64>,
    ) -> Report {
        Report {
            label: label.to_owned(),
            subscribers,
            rate,
            payload,
            sent,
            expected,
            delivered,
            seconds: publishing.as_secs_f64(),
            server_cpu_seconds,
            server_rss,
            latency_us: [
                latency.value_at_quantile(0.5),
                latency.value_at_quantile(0.99),
                latency.value_at_quantile(0.999),
                latency.max(),
            ],
            extra: serde_json::Map::new(),
        }
    }

    pub fn lost(&self) -> Option<u64> {
        self.expected.map(|e| e.saturating_sub(self.delivered))
    }

    pub fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(f64::EPSILON)
    }

    /// Deliveries per CPU-second the server spent.
    pub fn deliveries_per_cpu_second(&self) -> Option<f64> {
        self.server_cpu_seconds.filter(|s| *s > 0.0).map(|s| self.delivered as f64 / s)
    }

    pub fn header() -> String {
        "| run | subscribers | rate/s | payload B | deliveries/s | lost | server CPU s | deliveries per CPU-s | server peak RSS MiB | p50 ms | p99 ms | p99.9 ms | max ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            .to_owned()
    }

    pub fn row(&self) -> String {
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let [p50, p99, p999, max] = self.latency_us;
        format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.label,
            self.subscribers,
            self.rate,
            self.payload,
            self.deliveries_per_second(),
            self.lost().map_or("-".into(), |n| n.to_string()),
            self.server_cpu_seconds.map_or("-".into(), |s| format!("{s:.2}")),
            self.deliveries_per_cpu_second().map_or("-".into(), |d| format!("{d:.0}")),
            self.server_rss.map_or("-".into(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64)),
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max),
        )
    }

    pub fn json(&self) -> Value {
        let mut value = json!({
            "label": self.label,
            "subscribers": self.subscribers,
            "rate": self.rate,
            "payload_bytes": self.payload,
            "sent": self.sent,
            "delivered": self.delivered,
            "lost": self.lost(),
            "seconds": self.seconds,
            "deliveries_per_second": self.deliveries_per_second(),
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_rss_bytes": self.server_rss,
            "deliveries_per_cpu_second": self.deliveries_per_cpu_second(),
            "latency_us": {"p50": self.latency_us[0], "p99": self.latency_us[1], "p999": self.latency_us[2], "max": self.latency_us[3]},
        });
        if let Value::Object(map) = &mut value {
            map.extend(self.extra.clone());
        }
        value
    }
}

/// Appends `report`'s row to the Markdown table at `path`, starting the
/// table with its header when the file is new or empty.
pub fn append_row(path: &std::path::Path, report: &Report) -> std::io::Result<()> {
    use std::io::Write as _;
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if fresh {
        writeln!(file, "{}", Report::header())?;
    }
    writeln!(file, "{}", report.row())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_json_add_up() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in [100, 200, 300, 10_000] {
            h.record(us).unwrap();
        }
        let r =
            Report::new("x", 100, 1000, 128, 1000, Some(100_000), 99_990, Duration::from_secs(2), Some(0.5), None, &h);
        assert_eq!(r.deliveries_per_second(), 49_995.0);
        assert_eq!(r.deliveries_per_cpu_second(), Some(199_980.0));
        assert!(r.row().contains("| 10 |"), "{}", r.row());
        assert_eq!(r.json()["lost"], 10);
        let table = std::env::temp_dir().join(format!("rows-{}.md", std::process::id()));
        append_row(&table, &r).unwrap();
        append_row(&table, &r).unwrap();
        let text = std::fs::read_to_string(&table).unwrap();
        std::fs::remove_file(&table).unwrap();
        assert_eq!(text.lines().count(), 4, "header, separator, two rows: {text}");
        assert!(r.latency_us[3] >= 10_000);
    }
}
