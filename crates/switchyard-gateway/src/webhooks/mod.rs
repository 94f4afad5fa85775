//! Webhooks: what happened on the cluster's channels, POSTed to the
//! application. One mechanism for both doors: a Pusher app's targets
//! (`[[pusher.apps.webhooks]]`, Pusher's body and `X-Pusher-Signature`)
//! and switchyard's own (`[[webhooks]]`, the same body and
//! `X-Switchyard-Signature: sha256=<hex>`).
//!
//! Each event is announced by the one node that saw it happen: the
//! presence store reports every change to exactly one caller (a channel's
//! occupancy is a presence entry per node, its members one per
//! connection), so an event is queued once per cluster. The node never
//! waits on a webhook: events go into a bounded queue per target (a full
//! queue drops and counts), and one task per target sends them in batches,
//! retrying with backoff; each event has an id for de-duplication.
//!
//! # Layout
//! - [`Webhooks`] (here): the targets, which events each wants, queueing.
//! - [`delivery`]: one target's sender: batches, signatures, retries.

mod delivery;

use crate::pusher::signing;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use switchyard_core::config::{Config, WebhookConfig};
use switchyard_core::{metric, pusher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    /// The cluster's first subscriber arrived.
    Occupied,
    /// The cluster's last subscriber left (or its node died and its entry
    /// expired).
    Vacated,
    MemberAdded {
        user_id: String,
    },
    MemberRemoved {
        user_id: String,
    },
    /// A Pusher client event (`client-*`), with its data as sent.
    ClientEvent {
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<String>,
    },
    /// A subscriber of a cache channel found no event to start from.
    CacheMiss,
}

impl Hook {
    pub const fn name(&self) -> &'static str {
        match self {
            Hook::Occupied => "channel_occupied",
            Hook::Vacated => "channel_vacated",
            Hook::MemberAdded { .. } => "member_added",
            Hook::MemberRemoved { .. } => "member_removed",
            Hook::ClientEvent { .. } => "client_event",
            Hook::CacheMiss => "cache_miss",
        }
    }
}

/// How a target signs its requests.
#[derive(Debug, Clone)]
enum Signer {
    /// `X-Pusher-Key` and `X-Pusher-Signature` (hex HMAC-SHA256 of the body).
    Pusher { key: String, secret: String },
    /// `X-Switchyard-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    Switchyard { secret: String },
}

impl Signer {
    fn headers(&self, body: &str) -> Vec<(&'static str, String)> {
        match self {
            Signer::Pusher { key, secret } => {
                vec![("x-pusher-key", key.clone()), ("x-pusher-signature", signing::sign(secret, body))]
            }
            Signer::Switchyard { secret } => {
                vec![("x-switchyard-signature", format!("sha256={}", signing::sign(secret, body)))]
            }
        }
    }
}

/// One event, ready for a body.
#[derive(Debug, Clone)]
struct Queued {
    name: &'static str,
    json: Value,
}

/// One target: its settings, and its queue.
struct Target {
    config: WebhookConfig,
    signer: Signer,
    queue: mpsc::Sender<Queued>,
    /// The sender task's end, until it starts.
    receiver: Mutex<Option<mpsc::Receiver<Queued>>>,
}

impl Target {
    fn new(config: WebhookConfig, signer: Signer) -> Target {
        let (queue, receiver) = mpsc::channel(config.max_queue);
        Target { config, signer, queue, receiver: Mutex::new(Some(receiver)) }
    }
}

/// The node's webhook targets.
pub struct Webhooks {
    /// `[[webhooks]]`: switchyard's own channels.
    own: Vec<Target>,
    /// Per Pusher app id, its targets.
    apps: Vec<(String, Vec<Target>)>,
    /// Makes each event's id unique on this node (with the node's name).
    next_id: AtomicU64,
    node: String,
}

impl Webhooks {
    pub fn new(config: &Config, node: &str) -> Webhooks {
        let own = config
            .webhooks
            .iter()
            .map(|w| Target::new(w.clone(), Signer::Switchyard { secret: w.secret.clone().unwrap_or_default() }))
            .collect();
        let apps = config
            .pusher
            .apps
            .iter()
            .map(|app| {
                let signer = Signer::Pusher { key: app.key.clone(), secret: app.secret.clone() };
                (app.id.clone(), app.webhooks.iter().map(|w| Target::new(w.clone(), signer.clone())).collect())
            })
            .collect();
        Webhooks { own, apps, next_id: AtomicU64::new(1), node: node.to_owned() }
    }

    /// The targets of a cluster channel, and the channel's name as they
    /// know it.
    fn targets(&self, channel: &str) -> (&[Target], String) {
        match pusher::app_channel(channel) {
            Some((app, name)) => {
                let targets = self.apps.iter().find(|(id, _)| id == app).map_or(&[][..], |(_, t)| &t[..]);
                (targets, name)
            }
            None => (&self.own[..], channel.to_owned()),
        }
    }

    /// Whether any target of `channel` takes `event` (a name of
    /// [`switchyard_core::config::WEBHOOK_EVENTS`]).
    pub fn wants(&self, channel: &str, event: &str) -> bool {
        self.targets(channel).0.iter().any(|t| t.config.wants(event))
    }

    /// Whether `channel`'s occupancy must be tracked.
    pub fn wants_occupancy(&self, channel: &str) -> bool {
        self.wants(channel, "channel_occupied") || self.wants(channel, "channel_vacated")
    }

    /// Queues `hook` on `channel` for every target that wants it; never
    /// waits (a full queue drops the event, counted).
    pub fn announce(&self, channel: &str, hook: Hook) {
        let (targets, name) = self.targets(channel);
        let event = hook.name();
        if !targets.iter().any(|t| t.config.wants(event)) {
            return;
        }
        let id = format!("{}-{}", self.node, self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut json = json!({ "name": event, "channel": name, "id": id });
        match &hook {
            Hook::MemberAdded { user_id } | Hook::MemberRemoved { user_id } => json["user_id"] = json!(user_id),
            Hook::ClientEvent { event, data, socket_id, user_id } => {
                json["event"] = json!(event);
                json["data"] = json!(data);
                json["socket_id"] = json!(socket_id);
                if let Some(user) = user_id {
                    json["user_id"] = json!(user);
                }
            }
            _ => {}
        }
        for target in targets.iter().filter(|t| t.config.wants(event)) {
            let outcome = match target.queue.try_send(Queued { name: event, json: json.clone() }) {
                Ok(()) => {
                    metric::webhook_queued().increment(1.0);
                    "queued"
                }
                Err(_) => "dropped_full",
            };
            metric::webhook_events(event, outcome).increment(1);
        }
    }

    /// Starts one sender per target on `tasks`, until `stop` (then each
    /// sends what it holds once more, within its timeout).
    pub fn start(&self, tasks: &TaskTracker, stop: CancellationToken) {
        let all = self.own.iter().chain(self.apps.iter().flat_map(|(_, targets)| targets.iter()));
        for target in all {
            let Some(receiver) = target.receiver.lock().unwrap_or_else(|e| e.into_inner()).take() else { continue };
            let sender = delivery::Sender::new(target.config.clone(), target.signer.clone());
            tasks.spawn(sender.run(receiver, stop.clone()));
        }
    }
}
