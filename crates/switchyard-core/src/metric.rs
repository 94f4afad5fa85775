//! Every metric of a node: names, help texts, and handles. Names follow
//! `switchyard_<subsystem>_<name>_<unit>[_total]`; the fixed ones are part of
//! the operations contract. No label holds a connection, user or channel id.

use crate::codes::ErrorCode;
use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use std::sync::{OnceLock, RwLock};

pub const CONNECTIONS: &str = "switchyard_connections";
pub const CONNECTIONS_LIMIT: &str = "switchyard_connections_limit";
pub const CONNECTIONS_ACCEPTED: &str = "switchyard_connections_accepted_total";
pub const CONNECTIONS_CLOSED: &str = "switchyard_connections_closed_total";
pub const CONNECTIONS_REFUSED: &str = "switchyard_connections_refused_total";
pub const SUBSCRIPTIONS: &str = "switchyard_subscriptions";
pub const CHANNELS: &str = "switchyard_channels";
pub const MESSAGES_RECEIVED: &str = "switchyard_messages_received_total";
pub const MESSAGES_SENT: &str = "switchyard_messages_sent_total";
pub const BYTES_RECEIVED: &str = "switchyard_bytes_received_total";
pub const BYTES_SENT: &str = "switchyard_bytes_sent_total";
pub const COMMANDS: &str = "switchyard_commands_total";
pub const COMMAND_ERRORS: &str = "switchyard_command_errors_total";
pub const BROKER_PUBLISHED: &str = "switchyard_broker_published_total";
pub const BROKER_RECEIVED: &str = "switchyard_broker_received_total";
pub const DELIVERY_LATENCY: &str = "switchyard_delivery_latency_seconds";
pub const TLS_HANDSHAKE_FAILURES: &str = "switchyard_tls_handshake_failures_total";
pub const CONNECT_TIMEOUTS: &str = "switchyard_connect_timeouts_total";
pub const TOKEN_EXPIRATIONS: &str = "switchyard_token_expirations_total";
pub const HEARTBEAT_TIMEOUTS: &str = "switchyard_heartbeat_timeouts_total";
pub const SLOW_CONSUMER_DISCONNECTS: &str = "switchyard_slow_consumer_disconnects_total";
pub const SLOW_CONSUMER_DROPS: &str = "switchyard_slow_consumer_drops_total";
pub const READY: &str = "switchyard_ready";
pub const BROKER_UP: &str = "switchyard_broker_up";
pub const BROKER_SUBSCRIPTIONS: &str = "switchyard_broker_subscriptions";
pub const BROKER_MALFORMED: &str = "switchyard_broker_malformed_total";
pub const BROKER_RECONNECTS: &str = "switchyard_broker_reconnects_total";
pub const BROKER_RESUBSCRIBES: &str = "switchyard_broker_resubscribes_total";
pub const BROKER_ERRORS: &str = "switchyard_broker_errors_total";
pub const CLUSTER_NODES: &str = "switchyard_cluster_nodes";
pub const GAP_REPAIRS: &str = "switchyard_broker_gap_repairs_total";
pub const GAP_UNREPAIRED: &str = "switchyard_broker_gap_unrepaired_total";
pub const BROKER_REGRESSIONS: &str = "switchyard_broker_regressions_total";
pub const BROKER_HELD_DROPPED: &str = "switchyard_broker_held_dropped_total";
pub const BROKER_PUSHES_DROPPED: &str = "switchyard_broker_pushes_dropped_total";
pub const BROKER_REPAIRS_QUEUED: &str = "switchyard_broker_repairs_queued";
pub const BROKER_CATCH_UP: &str = "switchyard_broker_catch_up_seconds";
pub const BROKER_FAILOVERS: &str = "switchyard_broker_failovers_total";
pub const RECOVERIES: &str = "switchyard_recoveries_total";
pub const RESUMES: &str = "switchyard_session_resumes_total";
pub const API_REQUESTS: &str = "switchyard_api_requests_total";
pub const PRESENCE_MEMBERS: &str = "switchyard_presence_members";
pub const PRESENCE_REFRESH_ERRORS: &str = "switchyard_presence_refresh_errors_total";
pub const CONTROL_RECEIVED: &str = "switchyard_control_received_total";
pub const CONTROL_DROPPED: &str = "switchyard_control_dropped_total";
pub const USER_OPERATIONS: &str = "switchyard_user_operations_total";
pub const TRANSPORT_CONNECTIONS: &str = "switchyard_transport_connections";
pub const REBALANCE_SHED: &str = "switchyard_rebalance_shed_total";
pub const REBALANCE_CHECKS: &str = "switchyard_rebalance_checks_total";
pub const JWKS_FETCHES: &str = "switchyard_jwks_fetches_total";
pub const BROKER_CUTOFFS: &str = "switchyard_broker_cutoffs_total";
pub const DEFLATED_FRAMES: &str = "switchyard_deflated_frames_total";
pub const INFLATE_REFUSALS: &str = "switchyard_inflate_refusals_total";
pub const DELTA_DELIVERIES: &str = "switchyard_delta_deliveries_total";
pub const CONSUMER_ENTRIES: &str = "switchyard_consumer_entries_total";
pub const CONSUMER_ERRORS: &str = "switchyard_consumer_errors_total";
pub const CONSUMER_LAG: &str = "switchyard_consumer_lag";
pub const CONSUMER_PARTITIONS: &str = "switchyard_consumer_partitions_held";
pub const CONSUMER_LATENCY: &str = "switchyard_consumer_publish_latency_seconds";
pub const FILTERED_OUT: &str = "switchyard_filtered_out_total";
pub const SESSION_END_TIMEOUTS: &str = "switchyard_session_end_timeouts_total";
pub const HTTP_BODY_TIMEOUTS: &str = "switchyard_http_body_timeouts_total";
pub const ADMIN_LOGINS: &str = "switchyard_admin_logins_total";
pub const SSE_COMMANDS: &str = "switchyard_sse_command_requests_total";
pub const SSE_COMMAND_ERRORS: &str = "switchyard_sse_command_errors_total";
pub const PROXY_REQUESTS: &str = "switchyard_proxy_requests_total";
pub const PROXY_ERRORS: &str = "switchyard_proxy_errors_total";
pub const PROXY_DURATION: &str = "switchyard_proxy_duration_seconds";
pub const PROXY_CIRCUIT_OPEN: &str = "switchyard_proxy_circuit_open";
pub const PROXY_CIRCUIT_OPENED: &str = "switchyard_proxy_circuit_opened_total";
pub const PUSHER_CONNECTIONS: &str = "switchyard_pusher_connections";
pub const PUSHER_ERRORS: &str = "switchyard_pusher_errors_total";
pub const PUSHER_API_REQUESTS: &str = "switchyard_pusher_api_requests_total";
pub const PUSHER_CLIENT_EVENTS: &str = "switchyard_pusher_client_events_total";
pub const WEBHOOK_EVENTS: &str = "switchyard_webhook_events_total";
pub const WEBHOOK_REQUESTS: &str = "switchyard_webhook_requests_total";
pub const WEBHOOK_QUEUED: &str = "switchyard_webhook_queued";

/// Buckets of the latency histogram, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Registers help texts and units; call once at start-up, after the recorder.
/// Handles already made, by metric name and label value. The macros look a
/// series up in the recorder's registry (hashing its key, allocating) on
/// every call; the per-message and per-connection paths call these
/// functions far too often for that. Filled from `describe`, that is once a
/// recorder is installed: a handle made before would record nowhere. Label
/// values come from bounded sets (`&'static str`), so the lists stay short.
struct Handles {
    counters: RwLock<Vec<((&'static str, &'static str), Counter)>>,
    gauges: RwLock<Vec<(&'static str, Gauge)>>,
    histograms: RwLock<Vec<(&'static str, Histogram)>>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn cached<K: PartialEq + Copy, H: Clone>(list: &RwLock<Vec<(K, H)>>, key: K, make: impl FnOnce() -> H) -> H {
    if let Some((_, handle)) = list.read().unwrap_or_else(|e| e.into_inner()).iter().find(|(k, _)| *k == key) {
        return handle.clone();
    }
    let handle = make();
    list.write().unwrap_or_else(|e| e.into_inner()).push((key, handle.clone()));
    handle
}

fn cached_counter(name: &'static str, label: &'static str, make: impl FnOnce() -> Counter) -> Counter {
    match HANDLES.get() {
        Some(handles) => cached(&handles.counters, (name, label), make),
        None => make(),
    }
}

fn cached_gauge(name: &'static str) -> Gauge {
    match HANDLES.get() {
        Some(handles) => cached(&handles.gauges, name, || gauge!(name)),
        None => gauge!(name),
    }
}

fn cached_histogram(name: &'static str) -> Histogram {
    match HANDLES.get() {
        Some(handles) => cached(&handles.histograms, name, || histogram!(name)),
        None => histogram!(name),
    }
}

pub fn describe() {
    HANDLES.get_or_init(|| Handles {
        counters: RwLock::new(Vec::new()),
        gauges: RwLock::new(Vec::new()),
        histograms: RwLock::new(Vec::new()),
    });
    describe_gauge!(CONNECTIONS, "Open client WebSocket connections on this node.");
    describe_gauge!(CONNECTIONS_LIMIT, "limits.max_connections: the connections this node accepts at most.");
    describe_counter!(CONNECTIONS_ACCEPTED, "WebSocket connections accepted.");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "WebSocket connections closed, by close code (1006: dropped without a close frame)."
    );
    describe_counter!(CONNECTIONS_REFUSED, "Upgrade requests refused before the handshake, by reason.");
    describe_gauge!(SUBSCRIPTIONS, "Channel subscriptions of the connections on this node.");
    describe_gauge!(CHANNELS, "Channels with at least one subscriber on this node.");
    describe_counter!(MESSAGES_RECEIVED, "Messages received from clients.");
    describe_counter!(MESSAGES_SENT, "Messages written to clients.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "WebSocket payload bytes received from clients.");
    describe_counter!(BYTES_SENT, Unit::Bytes, "WebSocket frame bytes written to clients.");
    describe_counter!(COMMANDS, "Commands received from clients, by command.");
    describe_counter!(COMMAND_ERRORS, "Error replies sent, by error code.");
    describe_counter!(BROKER_PUBLISHED, "Publications this node handed to the broker.");
    describe_counter!(BROKER_RECEIVED, "Publications this node received from the broker.");
    describe_counter!(
        HEARTBEAT_TIMEOUTS,
        "Connections closed with 4011: no sign of life within ping interval + pong timeout."
    );
    describe_counter!(SLOW_CONSUMER_DISCONNECTS, "Connections closed with 4008: outbound queue over its byte bound.");
    describe_counter!(
        SLOW_CONSUMER_DROPS,
        "Publications skipped for a subscriber whose queue was full (policy `drop`)."
    );
    describe_gauge!(READY, "1 while /readyz answers 200, else 0.");
    describe_gauge!(BROKER_UP, "1 while the broker (Redis) answers, else 0.");
    describe_gauge!(
        BROKER_SUBSCRIPTIONS,
        "Broker (Redis pub/sub) subscriptions this node holds: one per channel with a local subscriber."
    );
    describe_counter!(
        BROKER_MALFORMED,
        "Messages and entries from the broker that were not valid (an Envelope, a registry entry): dropped."
    );
    describe_counter!(BROKER_RECONNECTS, "Times the broker's pub/sub connection came back after a loss.");
    describe_counter!(BROKER_RESUBSCRIBES, "Subscriptions restored after a reconnect or a slot migration.");
    describe_counter!(BROKER_ERRORS, "Broker operations that failed, by operation.");
    describe_gauge!(CLUSTER_NODES, "Live gateway nodes in the cluster registry.");
    describe_counter!(GAP_REPAIRS, "Gaps in a history channel's offsets filled from its stream before delivery.");
    describe_counter!(GAP_UNREPAIRED, "Gaps the stream could no longer fill (trimmed or expired).");
    describe_counter!(
        BROKER_REGRESSIONS,
        "History channels whose history went back in time (a failover lost their tail), moved to a new epoch."
    );
    describe_counter!(
        BROKER_HELD_DROPPED,
        "Live publications not held behind a repair (the bound was reached); read from the stream afterwards."
    );
    describe_counter!(
        BROKER_PUSHES_DROPPED,
        "Publications dropped because the queue from Redis to the delivery task was full (history channels repair them)."
    );
    describe_gauge!(BROKER_REPAIRS_QUEUED, "Stream reads (gap repairs, catch-ups, rebases) waiting or in flight.");
    describe_histogram!(BROKER_CATCH_UP, Unit::Seconds, "Time to catch up every history channel after a reconnect.");
    describe_counter!(BROKER_FAILOVERS, "Times this node moved to a new Redis primary (Sentinel).");
    describe_counter!(RECOVERIES, "Subscribes with recover, by outcome: recovered or not.");
    describe_counter!(RESUMES, "connect.resume attempts, by outcome: resumed, expired, refused.");
    describe_counter!(API_REQUESTS, "HTTP API requests, by endpoint and status.");
    describe_gauge!(PRESENCE_MEMBERS, "Presence entries this node keeps fresh: its clients on presence channels.");
    describe_counter!(PRESENCE_REFRESH_ERRORS, "Channels whose presence entries could not be refreshed in one round.");
    describe_counter!(CONTROL_RECEIVED, "Control messages (user operations, surveys) received, by kind.");
    describe_counter!(CONTROL_DROPPED, "Control messages dropped because this node's control queue was full.");
    describe_counter!(
        ADMIN_LOGINS,
        "Admin page requests refused or logins, by outcome: accepted, refused (wrong password), locked, cross_origin (a state-changing request from another origin)."
    );
    describe_gauge!(PUSHER_CONNECTIONS, "Open connections of the Pusher door, by app.");
    describe_counter!(
        PUSHER_ERRORS,
        "pusher:error answers and closes sent to Pusher clients, by code (4001 unknown app, 4004 over the app's quota, 4009 bad signature, 4301 client event rate, 4300 malformed or refused)."
    );
    describe_counter!(
        PUSHER_API_REQUESTS,
        "Requests of the Pusher HTTP API, by endpoint and status (401 bad signature, 404 unknown app, 413 too large)."
    );
    describe_counter!(
        PUSHER_CLIENT_EVENTS,
        "Client events of Pusher connections, by outcome: relayed, refused, rate_limited."
    );
    describe_counter!(
        WEBHOOK_EVENTS,
        "Webhook events, by event and outcome: queued, delivered, dropped_full (the queue was full), dropped_failed (every attempt failed)."
    );
    describe_counter!(WEBHOOK_REQUESTS, "Webhook requests, by outcome: ok, status (a non-2xx answer), error, timeout.");
    describe_gauge!(WEBHOOK_QUEUED, "Webhook events waiting on this node, all targets together.");
    describe_counter!(REBALANCE_SHED, "Connections this node closed with 4012 to rebalance the cluster.");
    describe_counter!(REBALANCE_CHECKS, "Times the rebalancer compared this node with the cluster's mean.");
    describe_counter!(
        DEFLATED_FRAMES,
        "Publications compressed (permessage-deflate), once each for every subscriber that negotiated it, by encoding."
    );
    describe_counter!(
        CONSUMER_ENTRIES,
        "Entries of an application's queue this node took, by consumer and outcome: published, set_aside (sent to the dead letters)."
    );
    describe_counter!(
        CONSUMER_ERRORS,
        "Errors reading a consumer's source or publishing its entries (retried: nothing is lost), by consumer."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Entries of a consumer's source not yet published, for the partitions this node holds, by consumer."
    );
    describe_gauge!(CONSUMER_PARTITIONS, "Partitions of a consumer this node holds, by consumer.");
    describe_histogram!(
        CONSUMER_LATENCY,
        Unit::Seconds,
        "From an entry's creation in its source (the row's created_at, the stream entry's id) to its publication, by consumer."
    );
    describe_counter!(
        DELTA_DELIVERIES,
        "Publications delivered as Fossil deltas (one per subscriber that got the delta in place of the full data)."
    );
    describe_counter!(
        FILTERED_OUT,
        "Publications not delivered to a subscriber because its filter did not pass their tags (one per subscriber)."
    );
    describe_counter!(
        INFLATE_REFUSALS,
        "Compressed client messages refused: too_big (inflating past client.max_message_size, 1009), malformed (1007)."
    );
    describe_counter!(
        SESSION_END_TIMEOUTS,
        "Closed sessions whose last broker calls (save for resume, leave) did not finish within client.close_timeout."
    );
    describe_counter!(
        BROKER_CUTOFFS,
        "Times this node handed its clients back after its broker stayed out of reach past broker.cutoff_after."
    );
    describe_counter!(
        HTTP_BODY_TIMEOUTS,
        "HTTP request bodies that did not arrive within limits.body_timeout: refused."
    );
    describe_counter!(
        JWKS_FETCHES,
        "Fetches of the identity provider's key set (auth.jwks_url), by outcome (ok, error)."
    );
    describe_gauge!(TRANSPORT_CONNECTIONS, "Open client connections on this node, by transport (websocket, sse).");
    describe_counter!(
        SSE_COMMANDS,
        "POST /sse/command requests, by where the stream was: local, or remote (asked over the broker)."
    );
    describe_counter!(
        SSE_COMMAND_ERRORS,
        "POST /sse/command requests refused, by reason: unknown_session, too_large, bad_request, broker, timeout, origin."
    );
    describe_counter!(
        PROXY_REQUESTS,
        "Requests to the backend proxies, by proxy (connect, refresh, subscribe, publish, rpc)."
    );
    describe_counter!(
        PROXY_ERRORS,
        "Proxy requests without a usable answer, by proxy and kind: timeout, unavailable, status, malformed, overloaded, circuit_open."
    );
    describe_histogram!(
        PROXY_DURATION,
        Unit::Seconds,
        "Time from sending a proxy request to its whole answer, by proxy."
    );
    describe_gauge!(PROXY_CIRCUIT_OPEN, "1 while a proxy's circuit is open (requests fail at once), by proxy.");
    describe_counter!(PROXY_CIRCUIT_OPENED, "Times a proxy's circuit opened after repeated failures, by proxy.");
    describe_counter!(
        USER_OPERATIONS,
        "User operations applied to connections of this node, by kind (subscribe, unsubscribe, disconnect)."
    );
    // Register the unlabelled series so that they are rendered (at zero)
    // from the start, not only after their first event.
    for counter in [
        connections_accepted(),
        messages_received(),
        messages_sent(),
        bytes_received(),
        bytes_sent(),
        broker_published(),
        broker_received(),
        heartbeat_timeouts(),
        slow_consumer_disconnects(),
        slow_consumer_drops(),
        delta_deliveries(),
        filtered_out(),
        rebalance_checks(),
        rebalance_shed(),
    ] {
        counter.increment(0);
    }
    for counter in [
        broker_malformed(),
        broker_reconnects(),
        broker_resubscribes(),
        gap_repairs(),
        gap_unrepaired(),
        broker_regressions(),
        broker_pushes_dropped(),
    ] {
        counter.increment(0);
    }
    control_dropped().increment(0);
    for gauge in [connections(), subscriptions(), channels(), broker_subscriptions(), presence_members()] {
        gauge.increment(0.0);
    }
}

pub fn connections() -> Gauge {
    cached_gauge(CONNECTIONS)
}
pub fn connections_limit() -> Gauge {
    cached_gauge(CONNECTIONS_LIMIT)
}
pub fn connections_accepted() -> Counter {
    cached_counter(CONNECTIONS_ACCEPTED, "", || counter!(CONNECTIONS_ACCEPTED))
}
/// `code`: a close code's label, `1005`, `1006` or `other`.
pub fn connections_closed(code: &'static str) -> Counter {
    cached_counter(CONNECTIONS_CLOSED, code, || counter!(CONNECTIONS_CLOSED, "code" => code))
}
/// `reason`: one of `limit`, `draining`, `bad_request`.
pub fn connections_refused(reason: &'static str) -> Counter {
    cached_counter(CONNECTIONS_REFUSED, reason, || counter!(CONNECTIONS_REFUSED, "reason" => reason))
}
pub fn subscriptions() -> Gauge {
    cached_gauge(SUBSCRIPTIONS)
}
pub fn channels() -> Gauge {
    cached_gauge(CHANNELS)
}
pub fn messages_received() -> Counter {
    cached_counter(MESSAGES_RECEIVED, "", || counter!(MESSAGES_RECEIVED))
}
pub fn messages_sent() -> Counter {
    cached_counter(MESSAGES_SENT, "", || counter!(MESSAGES_SENT))
}
pub fn bytes_received() -> Counter {
    cached_counter(BYTES_RECEIVED, "", || counter!(BYTES_RECEIVED))
}
pub fn bytes_sent() -> Counter {
    cached_counter(BYTES_SENT, "", || counter!(BYTES_SENT))
}
/// `command`: a command name of the protocol (a bounded set).
pub fn commands(command: &'static str) -> Counter {
    cached_counter(COMMANDS, command, || counter!(COMMANDS, "command" => command))
}
pub fn command_errors(code: ErrorCode) -> Counter {
    let label = code.label();
    cached_counter(COMMAND_ERRORS, label, || counter!(COMMAND_ERRORS, "code" => label))
}
pub fn broker_published() -> Counter {
    cached_counter(BROKER_PUBLISHED, "", || counter!(BROKER_PUBLISHED))
}
pub fn broker_received() -> Counter {
    cached_counter(BROKER_RECEIVED, "", || counter!(BROKER_RECEIVED))
}
pub fn tls_handshake_failures() -> Counter {
    cached_counter(TLS_HANDSHAKE_FAILURES, "", || counter!(TLS_HANDSHAKE_FAILURES))
}
pub fn connect_timeouts() -> Counter {
    cached_counter(CONNECT_TIMEOUTS, "", || counter!(CONNECT_TIMEOUTS))
}
pub fn token_expirations() -> Counter {
    cached_counter(TOKEN_EXPIRATIONS, "", || counter!(TOKEN_EXPIRATIONS))
}
pub fn heartbeat_timeouts() -> Counter {
    cached_counter(HEARTBEAT_TIMEOUTS, "", || counter!(HEARTBEAT_TIMEOUTS))
}
pub fn slow_consumer_disconnects() -> Counter {
    cached_counter(SLOW_CONSUMER_DISCONNECTS, "", || counter!(SLOW_CONSUMER_DISCONNECTS))
}
pub fn slow_consumer_drops() -> Counter {
    cached_counter(SLOW_CONSUMER_DROPS, "", || counter!(SLOW_CONSUMER_DROPS))
}
pub fn delta_deliveries() -> Counter {
    cached_counter(DELTA_DELIVERIES, "", || counter!(DELTA_DELIVERIES))
}
pub fn filtered_out() -> Counter {
    cached_counter(FILTERED_OUT, "", || counter!(FILTERED_OUT))
}
pub fn ready() -> Gauge {
    cached_gauge(READY)
}
pub fn broker_up() -> Gauge {
    cached_gauge(BROKER_UP)
}
pub fn broker_subscriptions() -> Gauge {
    cached_gauge(BROKER_SUBSCRIPTIONS)
}
pub fn broker_malformed() -> Counter {
    cached_counter(BROKER_MALFORMED, "", || counter!(BROKER_MALFORMED))
}
pub fn broker_reconnects() -> Counter {
    cached_counter(BROKER_RECONNECTS, "", || counter!(BROKER_RECONNECTS))
}
pub fn broker_resubscribes() -> Counter {
    cached_counter(BROKER_RESUBSCRIBES, "", || counter!(BROKER_RESUBSCRIBES))
}
/// `operation`: `publish`, `subscribe`, `unsubscribe`, `register`.
pub fn broker_errors(operation: &'static str) -> Counter {
    cached_counter(BROKER_ERRORS, operation, || counter!(BROKER_ERRORS, "operation" => operation))
}
pub fn cluster_nodes() -> Gauge {
    cached_gauge(CLUSTER_NODES)
}
/// `endpoint`: `publish`, `broadcast`, `nodes`; `status`: the HTTP status.
pub fn api_requests(endpoint: &'static str, status: &'static str) -> Counter {
    counter!(API_REQUESTS, "endpoint" => endpoint, "status" => status)
}
pub fn gap_repairs() -> Counter {
    cached_counter(GAP_REPAIRS, "", || counter!(GAP_REPAIRS))
}
pub fn broker_regressions() -> Counter {
    cached_counter(BROKER_REGRESSIONS, "", || counter!(BROKER_REGRESSIONS))
}
pub fn broker_held_dropped() -> Counter {
    cached_counter(BROKER_HELD_DROPPED, "", || counter!(BROKER_HELD_DROPPED))
}
pub fn broker_pushes_dropped() -> Counter {
    cached_counter(BROKER_PUSHES_DROPPED, "", || counter!(BROKER_PUSHES_DROPPED))
}
pub fn broker_repairs_queued() -> Gauge {
    cached_gauge(BROKER_REPAIRS_QUEUED)
}
pub fn broker_catch_up() -> Histogram {
    cached_histogram(BROKER_CATCH_UP)
}
pub fn broker_failovers() -> Counter {
    cached_counter(BROKER_FAILOVERS, "", || counter!(BROKER_FAILOVERS))
}
pub fn gap_unrepaired() -> Counter {
    cached_counter(GAP_UNREPAIRED, "", || counter!(GAP_UNREPAIRED))
}
/// `outcome`: `recovered` or `unrecoverable`.
pub fn recoveries(outcome: &'static str) -> Counter {
    cached_counter(RECOVERIES, outcome, || counter!(RECOVERIES, "outcome" => outcome))
}
/// `outcome`: `resumed`, `expired` (unknown or used token), `refused` (another user).
pub fn resumes(outcome: &'static str) -> Counter {
    cached_counter(RESUMES, outcome, || counter!(RESUMES, "outcome" => outcome))
}
/// Presence entries kept by this node.
pub fn presence_members() -> Gauge {
    cached_gauge(PRESENCE_MEMBERS)
}
pub fn presence_refresh_errors() -> Counter {
    cached_counter(PRESENCE_REFRESH_ERRORS, "", || counter!(PRESENCE_REFRESH_ERRORS))
}
/// `kind`: `subscribe_user`, `unsubscribe_user`, `disconnect_user`,
/// `channels_request`, `channels_reply`.
pub fn control_received(kind: &'static str) -> Counter {
    cached_counter(CONTROL_RECEIVED, kind, || counter!(CONTROL_RECEIVED, "kind" => kind))
}
pub fn control_dropped() -> Counter {
    cached_counter(CONTROL_DROPPED, "", || counter!(CONTROL_DROPPED))
}
/// `kind`: `subscribe`, `unsubscribe`, `disconnect`.
pub fn user_operations(kind: &'static str) -> Counter {
    cached_counter(USER_OPERATIONS, kind, || counter!(USER_OPERATIONS, "kind" => kind))
}
/// `transport`: `websocket`, `sse`.
pub fn transport_connections(transport: &'static str) -> Gauge {
    gauge!(TRANSPORT_CONNECTIONS, "transport" => transport)
}
/// `route`: `local`, `remote`.
pub fn sse_commands(route: &'static str) -> Counter {
    cached_counter(SSE_COMMANDS, route, || counter!(SSE_COMMANDS, "route" => route))
}
pub fn sse_command_errors(reason: &'static str) -> Counter {
    cached_counter(SSE_COMMAND_ERRORS, reason, || counter!(SSE_COMMAND_ERRORS, "reason" => reason))
}
pub fn rebalance_shed() -> Counter {
    cached_counter(REBALANCE_SHED, "", || counter!(REBALANCE_SHED))
}
/// `encoding`: `json`, `protobuf`.
pub fn deflated_frames(encoding: &'static str) -> Counter {
    cached_counter(DEFLATED_FRAMES, encoding, || counter!(DEFLATED_FRAMES, "encoding" => encoding))
}
/// `reason`: `too_big`, `malformed`.
pub fn inflate_refusals(reason: &'static str) -> Counter {
    cached_counter(INFLATE_REFUSALS, reason, || counter!(INFLATE_REFUSALS, "reason" => reason))
}
pub fn session_end_timeouts() -> Counter {
    cached_counter(SESSION_END_TIMEOUTS, "", || counter!(SESSION_END_TIMEOUTS))
}
pub fn broker_cutoffs() -> Counter {
    cached_counter(BROKER_CUTOFFS, "", || counter!(BROKER_CUTOFFS))
}
pub fn http_body_timeouts() -> Counter {
    cached_counter(HTTP_BODY_TIMEOUTS, "", || counter!(HTTP_BODY_TIMEOUTS))
}
/// `outcome`: `ok`, `error`.
pub fn jwks_fetches(outcome: &'static str) -> Counter {
    cached_counter(JWKS_FETCHES, outcome, || counter!(JWKS_FETCHES, "outcome" => outcome))
}
pub fn rebalance_checks() -> Counter {
    cached_counter(REBALANCE_CHECKS, "", || counter!(REBALANCE_CHECKS))
}
/// `proxy`: `connect`, `refresh`, `subscribe`, `publish`, `rpc`.
pub fn proxy_requests(proxy: &'static str) -> Counter {
    cached_counter(PROXY_REQUESTS, proxy, || counter!(PROXY_REQUESTS, "proxy" => proxy))
}
/// `kind`: `timeout`, `unavailable`, `status`, `malformed`, `overloaded`,
/// `circuit_open`. Not cached: errors are rare, and two labels.
pub fn proxy_errors(proxy: &'static str, kind: &'static str) -> Counter {
    counter!(PROXY_ERRORS, "proxy" => proxy, "kind" => kind)
}
pub fn proxy_duration(proxy: &'static str) -> Histogram {
    histogram!(PROXY_DURATION, "proxy" => proxy)
}
/// A consumer's handles: made once per consumer task (the name is the label).
pub fn consumer_entries(consumer: &str, outcome: &'static str) -> Counter {
    counter!(CONSUMER_ENTRIES, "consumer" => consumer.to_owned(), "outcome" => outcome)
}
pub fn consumer_errors(consumer: &str) -> Counter {
    counter!(CONSUMER_ERRORS, "consumer" => consumer.to_owned())
}
pub fn consumer_lag(consumer: &str, partition: u32) -> Gauge {
    gauge!(CONSUMER_LAG, "consumer" => consumer.to_owned(), "partition" => partition.to_string())
}
pub fn consumer_partitions(consumer: &str) -> Gauge {
    gauge!(CONSUMER_PARTITIONS, "consumer" => consumer.to_owned())
}
pub fn consumer_latency(consumer: &str) -> Histogram {
    histogram!(CONSUMER_LATENCY, "consumer" => consumer.to_owned())
}
pub fn proxy_circuit_open(proxy: &'static str) -> Gauge {
    gauge!(PROXY_CIRCUIT_OPEN, "proxy" => proxy)
}
pub fn proxy_circuit_opened(proxy: &'static str) -> Counter {
    counter!(PROXY_CIRCUIT_OPENED, "proxy" => proxy)
}
/// `outcome`: `accepted`, `refused`, `locked`.
pub fn admin_logins(outcome: &'static str) -> Counter {
    cached_counter(ADMIN_LOGINS, outcome, || counter!(ADMIN_LOGINS, "outcome" => outcome))
}

pub fn pusher_connections(app: &str) -> Gauge {
    gauge!(PUSHER_CONNECTIONS, "app" => app.to_owned())
}
pub fn pusher_errors(code: &'static str) -> Counter {
    cached_counter(PUSHER_ERRORS, code, || counter!(PUSHER_ERRORS, "code" => code))
}
pub fn pusher_api_requests(endpoint: &'static str, status: u16) -> Counter {
    counter!(PUSHER_API_REQUESTS, "endpoint" => endpoint, "status" => status.to_string())
}
pub fn pusher_client_events(outcome: &'static str) -> Counter {
    cached_counter(PUSHER_CLIENT_EVENTS, outcome, || counter!(PUSHER_CLIENT_EVENTS, "outcome" => outcome))
}
pub fn webhook_events(event: &'static str, outcome: &'static str) -> Counter {
    counter!(WEBHOOK_EVENTS, "event" => event, "outcome" => outcome)
}
pub fn webhook_requests(outcome: &'static str) -> Counter {
    cached_counter(WEBHOOK_REQUESTS, outcome, || counter!(WEBHOOK_REQUESTS, "outcome" => outcome))
}
pub fn webhook_queued() -> Gauge {
    cached_gauge(WEBHOOK_QUEUED)
}
