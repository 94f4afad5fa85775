//! Scenario 2, many channels: every client on a personal channel
//! (`u.<i>`) and on a group channel shared by `--group-size` clients
//! (`g.<i / group size>`). Publications alternate between a group and a
//! personal channel, spread over all of them; with `--churn`, that
//! percentage of clients per minute leaves and comes back (new connection,
//! both subscriptions again) while publications flow.

use crate::audience::Audience;
use crate::connection;
use crate::measurement::{Measurement, Sent};
use crate::report::Report;
use crate::{Args, Target, publishing};
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// The channels of client `i`.
fn channels_of(i: usize, group_size: usize) -> [String; 2] {
    [format!("u.{i}"), format!("g.{}", i / group_size)]
}

/// Where publication `k` goes: even ones to the groups in turn, odd ones to
/// personal channels in a stride (a prime) that reaches every client.
fn channel_for(k: u64, clients: usize, group_size: usize) -> String {
    let groups = clients.div_ceil(group_size) as u64;
    let n = k / 2;
    if k.is_multiple_of(2) { format!("g.{}", n % groups) } else { format!("u.{}", n * 7919 % clients as u64) }
}

/// Deliveries publication `k` makes when every client is there.
fn audience_of(k: u64, clients: usize, group_size: usize) -> u64 {
    if k % 2 == 1 {
        return 1;
    }
    let groups = clients.div_ceil(group_size) as u64;
    let group = ((k / 2) % groups) as usize;
    (clients - group * group_size).min(group_size) as u64
}

pub async fn run(args: &Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.payload >= 32, "--payload must be at least 32 bytes");
    anyhow::ensure!(args.group_size > 0, "--group-size must be positive");
    let clients = args.connections;
    let progress = crate::progress::bar(clients as u64, "connecting");
    let mut connecting = JoinSet::new();
    let mut audience = Audience::new();
    let mut next = 0;
    while next < clients || !connecting.is_empty() {
        while next < clients && connecting.len() < args.concurrency {
            let (url, target, channels) = (args.url.clone(), args.target, channels_of(next, args.group_size));
            let i = next;
            connecting.spawn(async move { connection::connect(&url, target, &channels).await.map(|c| (i, c)) });
            next += 1;
        }
        if let Some(joined) = connecting.join_next().await {
            let (i, (reader, writer)) = joined??;
            let replaced = audience.replace(i, reader, writer);
            debug_assert!(replaced.is_none());
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let mut publisher = publishing::Source::open(args).await?;
    if let publishing::Source::Client { publisher, .. } = &mut publisher {
        publisher.rooms = args.target == Target::SocketIo;
    }

    let audience = Arc::new(Mutex::new(audience));
    let churned = Arc::new(AtomicU64::new(0));
    let churn = (args.churn > 0.0).then(|| tokio::spawn(churn_loop(args.clone(), audience.clone(), churned.clone())));
    let measurement = Measurement::start(args);
    let group_size = args.group_size;
    let (sent, took) =
        publishing::open_loop(&mut publisher, args.rate, args.duration, args.payload, args.payload_kind, |k| {
            channel_for(k, clients, group_size)
        })
        .await?;
    if let Some(churn) = churn {
        churn.abort();
        let _ = churn.await;
    }
    let audience = Arc::try_unwrap(audience)
        .map_err(|_| anyhow::anyhow!("churn still running"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    // Under churn, who was there for which publication is not tracked.
    let expected = (args.churn == 0.0).then(|| (0..sent).map(|k| audience_of(k, clients, group_size)).sum::<u64>());
    audience
        .settle(expected.unwrap_or(u64::MAX), if expected.is_some() { args.late_limit } else { Duration::from_secs(2) })
        .await;
    let mut report = measurement
        .finish(args, clients, Sent { publications: sent, owed: expected, took }, publisher, audience)
        .await?;
    report.extra.insert("group_size".into(), json!(group_size));
    report.extra.insert("churn_percent_per_minute".into(), json!(args.churn));
    report.extra.insert("churned_connections".into(), json!(churned.load(Ordering::Relaxed)));
    Ok(report)
}

/// Every 100 ms, replaces the connections of `churn`%/min of the clients:
/// the old one closes, a new one subscribes to the same channels.
async fn churn_loop(args: Args, audience: Arc<Mutex<Audience>>, churned: Arc<AtomicU64>) {
    let per_tick = args.connections as f64 * args.churn / 100.0 / 600.0;
    let mut owed = 0.0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut k = 0u64;
    loop {
        tick.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let i = (k * 7919 % args.connections as u64) as usize;
            k += 1;
            let Ok((reader, writer)) =
                connection::connect(&args.url, args.target, &channels_of(i, args.group_size)).await
            else {
                continue;
            };
            let old = audience.lock().unwrap_or_else(|e| e.into_inner()).replace(i, reader, writer);
            if let Some(mut writer) = old {
                connection::close(&mut writer).await;
            }
            churned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_reach_every_channel_and_their_audience_adds_up() {
        let (clients, group_size) = (95, 10);
        let mut seen = std::collections::HashSet::new();
        for k in 0..2_000 {
            seen.insert(channel_for(k, clients, group_size));
        }
        assert_eq!(seen.len(), 95 + 10, "every personal and group channel");
        // Group 9 has the last 5 clients.
        let last_group = (0..2_000).step_by(2).find(|&k| channel_for(k, clients, group_size) == "g.9").unwrap();
        assert_eq!(audience_of(last_group, clients, group_size), 5);
        assert_eq!(audience_of(1, clients, group_size), 1);
        assert_eq!(channels_of(42, group_size), ["u.42".to_owned(), "g.4".to_owned()]);
    }
}
