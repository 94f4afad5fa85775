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
    /// Each process's own, in `--server-pid` order (for clusters: where a
    /// crossing publication's CPU goes, node by node and in Redis).
    cpu_each_before: Vec<Option<f64>>,
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
            cpu_each_before: args.server_pid.iter().map(|pid| cpu::cpu_seconds(*pid)).collect(),
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
        let cpu_each: Vec<Option<f64>> = args
            .server_pid
            .iter()
            .zip(&self.cpu_each_before)
            .map(|(pid, before)| before.zip(cpu::cpu_seconds(*pid)).map(|(b, a)| a - b))
            .collect();
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
        // CPU µs per publication in each server process, in `--server-pid`
        // order (switchyard-redis: the publishing node, the receiving node,
        // Redis).
        let per_publication: Vec<Option<f64>> = cpu_each
            .iter()
            .map(|cpu| cpu.filter(|_| sent.publications > 0).map(|s| s * 1e6 / sent.publications as f64))
            .collect();
        report.extra.insert("server_cpu_seconds_each".into(), json!(cpu_each));
        report.extra.insert("cpu_us_per_publication_each".into(), json!(per_publication));
        Ok(report)
    }
}
