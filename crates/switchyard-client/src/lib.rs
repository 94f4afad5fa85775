//! An async Rust client for switchyard.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_client::ClientError> {
//! use switchyard_client::{Client, Encoding, Event, Options};
//! let mut client = Client::connect("ws://127.0.0.1:8080/ws", Options::new(Encoding::Json)).await?;
//! client.subscribe("news").await?;
//! client.publish("news", br#"{"text":"hi"}"#.to_vec()).await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Publication(p) = event {
//!         println!("{}: {:?}", p.channel, p.data);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`]: commands with replies matched by id, and the event stream.
//! - [`Options`], [`Encoding`]: how to connect.
//! - [`Event`]: what the server pushes.
//! - [`ClientError`]: what can go wrong.

mod client;
mod error;

pub use client::{Client, Encoding, Event, Options};
pub use error::ClientError;
pub use switchyard_proto::v1;
