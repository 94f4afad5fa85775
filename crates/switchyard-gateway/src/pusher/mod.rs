//! The Pusher Channels protocol (version 7) on the same cluster: the
//! signatures so far (`signing`); the WebSocket door at `/app/{key}`, the
//! HTTP API at `/apps/{id}/…` and webhooks are to come (docs/pusher.md once
//! they are).

pub mod signing;
