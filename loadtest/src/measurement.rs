//! What every publishing scenario measures around its run: the servers'
//! CPU time and peak memory from the first publication, then, at the end,
//! the deliveries, the latency of every subscriber, and the report.

use crate::audience::Audience;
use crate::publishing::Source;
use crate::report::Report;
use crate::{Args, cpu};
use serde_json::json;
use std::time::Duration;

pub struct Measurement {
    cpu_before: Option<f64>,
    peak: cpu::PeakRss,
}

/// What a run sent: publications, the deliveries they were owed (None
/// where that is not tracked), and how long publishing took.
pub struct Sent {
    pub publications: u64,
    pub owed: Option<u64>,
    pub took: Duration,
}

impl Measurement {
    /// Starts measuring the servers of `--server-pid`.
    pub fn start(args: &Args) -> Measurement {
        Measurement {
            cpu_before: cpu::total_cpu_seconds(&args.server_pid),
            peak: cpu::PeakRss::start(&args.server_pid),
        }
    }

    /// Stops measuring (call it once stragglers have settled), closes the
    /// publisher and every subscriber, and reports.
    pub async fn finish(
        self,
        args: &Args,
        clients: usize,
        sent: Sent,
        publisher: Source,
        audience: Audience,
    ) -> anyhow::Result<Report> {
        let cpu_after = cpu::total_cpu_seconds(&args.server_pid);
        let peak_rss = self.peak.stop();
        let delivered = audience.delivered();
        let refused = publisher.errors();
        drop(publisher);
        let latency = audience.close().await?;
        let mut report = Report::new(
            &args.label,
            clients,
            args.rate,
            args.payload,
            sent.publications,
            sent.owed,
            delivered,
            sent.took,
            self.cpu_before.zip(cpu_after).map(|(b, a)| a - b),
            peak_rss,
            &latency,
        );
        report.extra.insert("publish_via".into(), json!(format!("{:?}", args.publish_via).to_lowercase()));
        report.extra.insert("publish_errors".into(), json!(refused));
        Ok(report)
    }
}
