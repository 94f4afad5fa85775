//! The catch-up after a Redis restart with many history channels on one
//! node: `--connections` clients each subscribe to `--channels-per-client`
//! history channels (`hist:b<client>-<n>`), each channel gets one
//! publication (FCALL on Redis, `--publish-to`), and then a probe channel
//! (`--channel`, one subscriber) takes `--rate` publications per second by
//! FCALL for `--duration`. The script restarts Redis meanwhile; this
//! program follows the node's catch-up on its metrics (`--scrape`) and
//! reports how long it took and the probe's latency before, during and
//! after it. The publisher reconnects by itself when Redis goes away;
//! refused publications are counted, not owed.

use crate::Args;
use crate::backend::{BackendPublisher, Via};
use crate::connection;
use crate::scrape;
use crate::stamp;
use fastwebsockets::{Frame, OpCode};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Deliveries of the probe: (receive time, latency), microseconds.
type Seen = Arc<Mutex<Vec<(u64, u64)>>>;

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    let redis = args.publish_to.clone().ok_or_else(|| anyhow::anyhow!("--publish-to <redis host:port> is needed"))?;
    let scrape_at = args.scrape.first().cloned().ok_or_else(|| anyhow::anyhow!("--scrape <node metrics> is needed"))?;
    let per_client = args.channels_per_client;
    let channels = args.connections * per_client;

    // Every ballast channel subscribed, and its deliveries counted.
    let delivered = Arc::new(AtomicU64::new(0));
    let mut ballast = Vec::new();
    for client in 0..args.connections {
        let names: Vec<String> = (0..per_client).map(|n| format!("hist:b{client}-{n}")).collect();
        let (reader, writer) = connection::connect(&args.url, args.target, &names).await?;
        ballast.push((connection::receive(reader, delivered.clone()), writer));
    }
    let mut seed = BackendPublisher::connect(Via::Fcall, &redis, "").await?;
    for client in 0..args.connections {
        for n in 0..per_client {
            seed.publish(&format!("hist:b{client}-{n}"), &stamp::payload(stamp::now_us(), 64)).await?;
        }
    }
    seed.flush().await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered.load(Ordering::Relaxed) < channels as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the ballast channels' first publications did not all arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{channels} history channels subscribed and published once");

    // The probe: one subscriber, publications at --rate by FCALL.
    let (reader, mut probe_writer) =
        connection::connect(&args.url, args.target, std::slice::from_ref(&args.channel)).await?;
    let seen: Seen = Arc::default();
    let receiving = tokio::spawn(probe(reader, seen.clone()));
    let catch_up = tokio::spawn(follow(scrape_at.clone(), args.duration + Duration::from_secs(30)));
    let (published, refused) = publish(&redis, &args.channel, args.rate, args.duration, args.payload).await;
    tokio::time::sleep(args.late_limit).await;
    connection::close(&mut probe_writer).await;
    receiving.abort();
    let window = catch_up.await??;
    for (_, mut writer) in ballast {
        connection::close(&mut writer).await;
    }

    let seen = seen.lock().await.clone();
    let part = |from: u64, to: u64| {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        for (_, latency) in seen.iter().filter(|(at, _)| (from..to).contains(at)) {
            let _ = h.record((*latency).max(1));
        }
        json!({
            "deliveries": h.len(),
            "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
            "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
            "max_ms": h.max() as f64 / 1000.0,
        })
    };
    let (start, end) = (window.start_us, window.end_us);
    // The worst latency per 100 ms from the outage to the catch-up's end.
    let timeline: Vec<Value> = (0..)
        .map(|i| window.outage_us.saturating_add(i * 100_000))
        .take_while(|t| *t < end.saturating_add(200_000))
        .map(|t| {
            let worst = seen.iter().filter(|(at, _)| (t..t + 100_000).contains(at)).map(|(_, l)| *l).max();
            json!({"from_outage_ms": (t - window.outage_us) / 1000, "deliveries_max_ms": worst.map(|l| l as f64 / 1000.0)})
        })
        .collect();
    Ok(json!({
        "label": args.label,
        "channels": channels,
        "rate": args.rate,
        "published": published,
        "refused": refused,
        "received": seen.len(),
        "catch_up_seconds": window.seconds,
        "catch_up_reads": window.reads,
        "probe_before": part(0, window.outage_us),
        "probe_during_catch_up": part(start, end),
        "probe_after": part(end, u64::MAX),
        "catch_up_from_outage_ms": start.saturating_sub(window.outage_us) / 1000,
        "timeline": timeline,
    }))
}

async fn probe(mut reader: connection::Reader, seen: Seen) {
    let mut ignore = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    while let Ok(frame) = reader.read_frame(&mut ignore).await {
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                if let Some(sent) = stamp::read(&frame.payload) {
                    let now = stamp::now_us();
                    seen.lock().await.push((now, now.saturating_sub(sent)));
                }
            }
            OpCode::Close => break,
            _ => {}
        }
    }
}

/// Open loop in 1 ms ticks by FCALL; a broken connection (Redis away) is
/// made again at the next tick, and what could not be sent is refused.
async fn publish(redis: &str, channel: &str, rate: u64, duration: Duration, size: usize) -> (u64, u64) {
    let (mut published, mut refused) = (0u64, 0u64);
    let mut publisher: Option<BackendPublisher> = None;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_micros() as u64 * rate / 1_000_000).saturating_sub(published + refused);
        if due == 0 {
            continue;
        }
        if publisher.is_none() {
            publisher = BackendPublisher::connect(Via::Fcall, redis, "").await.ok();
        }
        let Some(p) = publisher.as_mut() else {
            refused += due;
            continue;
        };
        let mut ok = true;
        for _ in 0..due {
            ok &= p.publish(channel, &stamp::payload(stamp::now_us(), size)).await.is_ok();
        }
        ok &= p.flush().await.is_ok();
        if ok {
            published += due;
        } else {
            refused += due;
            publisher = None;
        }
    }
    if let Some(p) = &publisher {
        refused += p.failed.load(Ordering::Relaxed);
        published = published.saturating_sub(p.failed.load(Ordering::Relaxed));
    }
    (published, refused)
}

/// When the outage began (the node saw Redis go), and the catch-up after.
struct Window {
    outage_us: u64,
    start_us: u64,
    end_us: u64,
    seconds: f64,
    reads: f64,
}

/// Polls the node's metrics every 20 ms: the outage starts when
/// `switchyard_broker_up` drops, the catch-up when reads are queued after
/// it, and it ends when `switchyard_broker_catch_up_seconds` counts one more.
async fn follow(at: String, limit: Duration) -> anyhow::Result<Window> {
    let first = scrape::fetch(&at).await?;
    let (count0, sum0) = (
        scrape::sum(&first, "switchyard_broker_catch_up_seconds_count"),
        scrape::sum(&first, "switchyard_broker_catch_up_seconds_sum"),
    );
    let mut window = Window { outage_us: u64::MAX, start_us: u64::MAX, end_us: u64::MAX, seconds: 0.0, reads: 0.0 };
    let started = Instant::now();
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(now) = scrape::fetch(&at).await else { continue };
        let t = stamp::now_us();
        if window.outage_us == u64::MAX && scrape::sum(&now, "switchyard_broker_up") < 1.0 {
            window.outage_us = t;
        }
        let queued = scrape::sum(&now, "switchyard_broker_repairs_queued");
        if window.outage_us != u64::MAX && window.start_us == u64::MAX && queued > 0.0 {
            window.start_us = t;
        }
        window.reads = window.reads.max(queued);
        if scrape::sum(&now, "switchyard_broker_catch_up_seconds_count") > count0 {
            window.end_us = t;
            window.seconds = scrape::sum(&now, "switchyard_broker_catch_up_seconds_sum") - sum0;
            if window.start_us == u64::MAX {
                window.start_us = t - (window.seconds * 1e6) as u64;
            }
            return Ok(window);
        }
    }
    anyhow::bail!("no catch-up seen on {at} within {limit:?}")
}
