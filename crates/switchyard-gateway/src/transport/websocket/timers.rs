//! A connection's timed duties, on one timer in its session task: the
//! heartbeat (a WebSocket ping, an application ping when nothing else was
//! written, the close of a silent peer), the deadline to connect, and the
//! token's expiry.
//!
//! They run beside the reader rather than the writer: the writer of a busy
//! subscriber wakes once per batch of publications, and polling three timers
//! on each of those wake-ups cost more than the write around it. The reader
//! wakes only for what the client sends.

use crate::codec;
use crate::command::liveness::Liveness;
use crate::transport::lifecycle;
use switchyard_core::codes::CloseCode;
use switchyard_core::config::ClientConfig;
use switchyard_core::metric;
use switchyard_core::outbound::{Close, OutFrame, Outbound};
use switchyard_core::protocol::Protocol;
use switchyard_core::wsframe;
use tokio::time::{Duration, Instant};

pub struct Timers {
    ping_interval: Duration,
    silence_limit: Duration,
    next_ping: Instant,
    /// Until the first command, when the connection must have connected.
    connect_by: Option<Instant>,
    /// The expiry was acted on: it is due no more.
    expired: bool,
    /// The writer's count of frames written once the last heartbeat's own
    /// frames are out: past it, something else was written.
    written_after_ping: u64,
}

impl Timers {
    pub fn new(config: &ClientConfig, liveness: &Liveness) -> Self {
        let now = Instant::now();
        Timers {
            ping_interval: config.ping_interval,
            silence_limit: config.ping_interval + config.pong_timeout,
            next_ping: now + config.ping_interval,
            connect_by: (!liveness.is_connected()).then_some(now + config.connect_timeout),
            expired: false,
            written_after_ping: 0,
        }
    }

    /// When the next duty is due. The expiry is read again each time: the
    /// session changes it on connect and refresh.
    pub fn due(&self, liveness: &Liveness) -> Instant {
        let mut due = self.next_ping;
        if let Some(at) = self.connect_by {
            due = due.min(at);
        }
        if let Some(at) = liveness.expires_at()
            && !self.expired
        {
            due = due.min(at);
        }
        due
    }

    /// Does whatever is due at `now`. `protocol` is None for echo
    /// connections: they get WebSocket pings only.
    pub fn run(&mut self, now: Instant, liveness: &Liveness, outbound: &Outbound, protocol: Option<Protocol>) {
        if let Some(at) = self.connect_by
            && at <= now
        {
            self.connect_by = None;
            if !liveness.is_connected() {
                // Opened a WebSocket and said nothing: do not hold a place for it.
                metric::connect_timeouts().increment(1);
                outbound.close(Close::Server(CloseCode::Unauthorized));
            }
        }
        if !self.expired
            && let Some(close) = lifecycle::expiry(liveness, now)
        {
            self.expired = true;
            outbound.close(close);
        }
        if self.next_ping <= now {
            self.next_ping = now + self.ping_interval;
            if liveness.silent_for() > self.silence_limit {
                if outbound.closing().is_none() {
                    metric::heartbeat_timeouts().increment(1);
                }
                // Lost if another close won first; that one is then written.
                outbound.close(Close::Server(CloseCode::HeartbeatTimeout));
                return;
            }
            let written = outbound.frames_written();
            let quiet = written <= self.written_after_ping;
            // A full queue is a slow consumer: the next publication closes
            // it, and a ping would not help.
            let mut pushed =
                u64::from(outbound.push(OutFrame::control(wsframe::control(wsframe::OPCODE_PING, b""))).is_ok());
            if quiet && let Some(protocol) = protocol {
                // Browsers cannot see WebSocket pings: tell them we are alive.
                pushed += u64::from(outbound.push(OutFrame::control(codec::ping(protocol))).is_ok());
            }
            // Whatever else is written from now on takes the count past this.
            self.written_after_ping = written + pushed;
        }
    }
}
