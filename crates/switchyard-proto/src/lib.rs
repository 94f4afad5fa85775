//! switchyard's wire types, generated from `proto/switchyard/v1/*.proto`.
//!
//! # Layout
//! - [`v1`]: the prost messages of the client protocol (`client.proto`) and of
//!   the cluster (`cluster.proto`, the [`v1::Envelope`]).
//! - [`json`]: the JSON encoding of the client protocol, derived from the same
//!   types (see `build.rs` for the mapping rules).
//! - [`fossil`]: Fossil deltas, the format of delta-compressed publications.

/// Version 1 of the protocol: client frames, server frames, the cluster Envelope.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/switchyard.v1.rs"));
}

pub mod fossil;
pub mod json;
