//! Pings both connections every second. That keeps readiness true to the
//! facts, makes a lost connection reconnect even when idle, and reloads the
//! function library when Redis comes back without it. Behind Sentinel it
//! also asks the sentinels where the primary is, and moves both
//! connections there after a failover.

use super::RedisSettings;
use super::Shared;
use super::connection::{self, Commands, PubSub, RedisTarget};
use super::library;
use super::sentinel::Sentinels;
use super::subscriptions::Request;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_core::metric;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{info, warn};

const EVERY: Duration = Duration::from_secs(1);
/// How long following a failover may take (connecting to the new primary
/// and subscribing there).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    mut commands: Commands,
    mut pubsub: PubSub,
    shared: Arc<Shared>,
    settings: RedisSettings,
    repairs: mpsc::Sender<()>,
    requests: mpsc::Sender<Request>,
) {
    let sharded = settings.target.is_cluster();
    let ping_timeout = settings.health_timeout;
    // The Cluster's masters, slot range by slot range, as last seen.
    let mut masters: Option<Vec<(i64, i64, String)>> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let RedisTarget::Sentinel(sentinels) = &settings.target {
            follow(sentinels, &commands, &pubsub, &shared, &settings).await;
        }
        if sharded && let Some(now) = cluster_masters(&mut commands, ping_timeout).await {
            if masters.as_ref().is_some_and(|before| *before != now) {
                // A replica took over (or slots moved): sharded subscriptions
                // stay with the server they were made on, so make them again,
                // and catch up on what went by meanwhile.
                info!("the Cluster's masters changed: subscribing again on the new ones");
                metric::broker_failovers().increment(1);
                let _ = requests.send(Request::RestoreAll).await;
                shared.lost.store(true, Ordering::Release);
            }
            masters = Some(now);
        }
        let commands_ok =
            matches!(timeout(ping_timeout, redis::cmd("PING").query_async::<()>(&mut commands)).await, Ok(Ok(())));
        let pubsub_ok = matches!(timeout(ping_timeout, pubsub.ping()).await, Ok(Ok(())));
        let mut ready = commands_ok && pubsub_ok;
        let was_ready = shared.ready.load(Ordering::Acquire);
        if ready && !was_ready {
            // Back after an outage: Redis may have restarted empty.
            if let Err(e) = library::load(
                &mut commands,
                &settings.prefix,
                sharded,
                &settings.namespaces,
                settings.idempotency_window,
            )
            .await
            {
                warn!(error = %e, "cannot reload the function library");
                ready = false;
            }
        }
        if ready && shared.lost.swap(false, Ordering::AcqRel) {
            metric::broker_reconnects().increment(1);
            info!("Redis is back; subscriptions restored");
            // Fetch what channels with history got meanwhile. A repair
            // already pending covers this one too.
            let _ = repairs.try_send(());
        }
        if !ready && was_ready {
            warn!(commands_ok, pubsub_ok, "Redis is unreachable");
            // Until the pub/sub connection is seen healthy again, treat it as lost.
            shared.lost.store(true, Ordering::Release);
        }
        shared.ready.store(ready, Ordering::Release);
        metric::broker_up().set(if ready { 1.0 } else { 0.0 });
    }
}

/// Moves both connections to the primary the sentinels name, if it is not
/// the one they are on: subscribed there to everything this node listens
/// to before the swap, so no channel is left behind.
async fn follow(
    sentinels: &Sentinels,
    commands: &Commands,
    pubsub: &PubSub,
    shared: &Shared,
    settings: &RedisSettings,
) {
    let (Commands::Sentinel(on_commands), PubSub::Sentinel(on_pubsub, pushes)) = (commands, pubsub) else { return };
    let Ok(url) = sentinels.primary_url(&settings.tls).await else { return };
    if url == on_commands.url() && url == on_pubsub.url() {
        return;
    }
    let address = url.rsplit('@').next().unwrap_or(&url).to_owned();
    warn!(primary = %address, "the sentinels name a new primary: following the failover");
    let moved = async {
        let new_commands = connection::commands_manager(&url, &settings.tls).await?;
        let mut new_pubsub = connection::pubsub_manager(&url, &settings.tls, pushes.clone()).await?;
        new_pubsub.subscribe(&shared.keys.control()).await?;
        new_pubsub.subscribe(&shared.keys.node_control(&settings.node)).await?;
        let wanted: Vec<String> = {
            let channels = shared.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.iter().map(|c| shared.keys.pubsub(c)).collect()
        };
        for chunk in wanted.chunks(512) {
            new_pubsub.subscribe(chunk).await?;
        }
        Ok::<_, redis::RedisError>((new_commands, new_pubsub))
    };
    match timeout(FOLLOW_TIMEOUT, moved).await {
        Ok(Ok((new_commands, new_pubsub))) => {
            on_commands.replace(url.clone(), new_commands);
            on_pubsub.replace(url, new_pubsub);
            metric::broker_failovers().increment(1);
            // As after any outage: reload the library if needed, catch up.
            shared.lost.store(true, Ordering::Release);
            shared.ready.store(false, Ordering::Release);
        }
        Ok(Err(e)) => warn!(error = %e, "cannot reach the new primary yet"),
        Err(_) => warn!("the new primary did not answer in time"),
    }
}

/// Each slot range's master (`CLUSTER SLOTS`), sorted; None if it cannot be read.
async fn cluster_masters(commands: &mut Commands, ping_timeout: Duration) -> Option<Vec<(i64, i64, String)>> {
    let reply = timeout(ping_timeout, redis::cmd("CLUSTER").arg("SLOTS").query_async::<redis::Value>(commands)).await;
    let Ok(Ok(redis::Value::Array(ranges))) = reply else { return None };
    let mut masters = Vec::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else { continue };
        let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end)), Some(redis::Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let id = master.get(2).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).unwrap_or_default();
        masters.push((*start, *end, id));
    }
    masters.sort();
    Some(masters)
}
