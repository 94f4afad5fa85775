//! Scenario 1 (and 3, and the slow-consumer part of 6): subscribers on one
//! channel, one publisher at a fixed rate. Optionally some subscribers
//! never read (`--stalled-percent`), and the publisher sits on another
//! node (`--publish-url`). Subscribers may offer permessage-deflate
//! (`--deflate`), ask for deltas (`--delta`) or filter (`--filters`); the
//! bytes they read are reported per delivery.

use crate::audience::Audience;
use crate::connection::{self, Asks};
use crate::measurement::{Measurement, Sent};
use crate::report::Report;
use crate::{Args, publishing, scrape};
use serde_json::json;

pub async fn run(args: &Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.payload >= 32, "--payload must be at least 32 bytes");
    let channels = [args.channel.clone()];
    let stalled = (args.subscribers as f64 * args.stalled_percent / 100.0).round() as usize;
    let mut audience = Audience::new();
    for i in 0..args.subscribers {
        if args.target == crate::Target::SwitchyardSse {
            audience.add_stream(&args.url, &args.channel).await?;
            continue;
        }
        let asks = Asks {
            deflate: args.deflate,
            delta: args.delta,
            filter: (args.filters > 0).then(|| format!(r#"{{"key":"k","cmp":"eq","val":"v{}"}}"#, i % args.filters)),
            counted: i >= stalled,
        };
        let (reader, writer) = connection::connect_asking(&args.url, args.target, &channels, &asks).await?;
        if i < stalled {
            audience.add_stalled(reader, writer);
        } else {
            audience.add(reader, writer);
        }
    }
    let mut publisher = publishing::Source::open(args).await?;
    publisher.tag(args.filters);
    let wire_before = connection::WIRE_BYTES.load(std::sync::atomic::Ordering::Relaxed);

    let broker_before = broker_counters(&args.scrape).await?;
    let measurement = Measurement::start(args);
    let (sent, took) =
        publishing::open_loop(&mut publisher, args.rate, args.duration, args.payload, args.payload_kind, |_| {
            args.channel.clone()
        })
        .await?;
    // Refused publications were not published; they are owed to no one.
    // With filters, publication j is owed to the readers whose filter is
    // j's tag.
    let readers = args.subscribers - stalled;
    let owed = |refused: u64| match args.filters {
        0 => sent.saturating_sub(refused) * readers as u64,
        f => (0..f)
            .map(|v| {
                let publications = (0..sent).filter(|j| *j as usize % f == v).count() as u64;
                let subscribers = (stalled..args.subscribers).filter(|i| i % f == v).count() as u64;
                publications * subscribers
            })
            .sum::<u64>()
            .saturating_sub(refused * (readers / f) as u64),
    };
    audience.settle(owed(publisher.errors()), args.late_limit).await;
    let broker_after = broker_counters(&args.scrape).await?;
    let owed = Some(owed(publisher.errors()));
    let mut report = measurement
        .finish(args, args.subscribers, Sent { publications: sent, owed, took }, publisher, audience)
        .await?;
    report.extra.insert("stalled_subscribers".into(), json!(stalled));
    let wire = connection::WIRE_BYTES.load(std::sync::atomic::Ordering::Relaxed) - wire_before;
    report.extra.insert("wire_bytes_per_delivery".into(), json!(wire as f64 / report.delivered.max(1) as f64));
    report.extra.insert("payload_kind".into(), json!(format!("{:?}", args.payload_kind).to_lowercase()));
    report.extra.insert("deflate_offered".into(), json!(args.deflate));
    report.extra.insert("delta".into(), json!(args.delta));
    report.extra.insert("filters".into(), json!(args.filters));
    if let (Some((received_before, published_before)), Some((received_after, published_after))) =
        (broker_before, broker_after)
    {
        // Across every node: publications handed to the broker, and the
        // broker messages nodes received for them (one per interested node
        // when fan-out is per node, not per subscriber).
        let per = |d: f64| d / sent.max(1) as f64;
        report.extra.insert("broker_published_per_publication".into(), json!(per(published_after - published_before)));
        report.extra.insert("broker_received_per_publication".into(), json!(per(received_after - received_before)));
    }
    Ok(report)
}

/// (received, published) broker counters summed over the nodes whose
/// metrics listeners are in `scrape`; None when there are none.
async fn broker_counters(scrape: &[String]) -> anyhow::Result<Option<(f64, f64)>> {
    if scrape.is_empty() {
        return Ok(None);
    }
    let received = scrape::total(scrape, "switchyard_broker_received_total").await?;
    let published = scrape::total(scrape, "switchyard_broker_published_total").await?;
    Ok(Some((received, published)))
}
