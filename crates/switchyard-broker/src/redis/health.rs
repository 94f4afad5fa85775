//! Pings both connections every second. That keeps readiness true to the
//! facts, makes a lost connection reconnect even when idle, and reloads the
//! function library when Redis comes back without it.

use super::RedisSettings;
use super::Shared;
use super::connection::{Commands, PubSub};
use super::library;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_core::metric;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{info, warn};

const EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(
    mut commands: Commands,
    mut pubsub: PubSub,
    shared: Arc<Shared>,
    settings: RedisSettings,
    repairs: mpsc::Sender<()>,
) {
    let sharded = settings.target.is_cluster();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let commands_ok =
            matches!(timeout(PING_TIMEOUT, redis::cmd("PING").query_async::<()>(&mut commands)).await, Ok(Ok(())));
        let pubsub_ok = matches!(timeout(PING_TIMEOUT, pubsub.ping()).await, Ok(Ok(())));
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
