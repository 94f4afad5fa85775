//! The JSON encoding (`switchyard.v1.json`) of the client protocol.
//!
//! Every message maps through serde attributes that `build.rs` derives from
//! the proto descriptors; this module holds the few pieces those attributes
//! point at, and the frame-level functions the gateway and clients call.

mod frame;
mod publication;
pub mod raw;

pub use frame::{FrameError, decode_client_frame, decode_server_frame, encode_client_frame, encode_server_frame};
