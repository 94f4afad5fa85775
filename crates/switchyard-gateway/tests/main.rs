//! The gateway's integration tests, one module per file, built as one binary.
//! nextest still runs every test in a process of its own.

mod admin;
mod api;
mod auth;
mod bad_input;
mod cli;
mod cluster_view;
mod conformance;
mod contract;
mod deployment;
mod drain;
mod failover;
mod heartbeat;
mod high_availability;
mod history;
mod hostile;
mod hostile_bus;
mod hostile_limits;
mod hostile_replies;
mod http;
mod local_cluster;
mod presence;
mod proxy;
mod publishing;
mod pubsub;
mod python_backend;
mod rebalance;
mod receipts;
mod redis_cluster;
mod redis_fanout;
mod session;
mod slow_consumer;
mod sse;
mod tls;
mod tokens;
mod users;
