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
//! For applications, [`Session`] keeps a session up across connections:
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_client::ClientError> {
//! use switchyard_client::{Encoding, Options, Session, SessionEvent, SessionOptions};
//! let urls = vec!["wss://rt.example.com/ws".to_owned()];
//! let mut session = Session::start(urls, SessionOptions::new(Options::new(Encoding::Json)));
//! session.subscribe("chat:room1").await?;
//! while let Some(event) = session.next_event().await {
//!     match event {
//!         SessionEvent::Publication(p) => println!("{:?} {:?}", p.offset, p.data),
//!         SessionEvent::Gap(gap) => eprintln!("missed {gap:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`]: one connection: commands with replies matched by id, and
//!   the event stream.
//! - [`Session`]: a session across connections: reconnect, resume,
//!   recovery, de-duplication, acks, token refresh.
//! - [`Options`], [`Encoding`]: how to connect (`ws://`, `wss://`).
//! - [`Event`], [`SessionEvent`]: what the server pushes.
//! - [`reconnect`]: the close-code table and the backoff.
//! - [`ClientError`]: what can go wrong.

mod client;
mod error;
pub mod reconnect;
mod session;

pub use client::{Client, Encoding, Event, Options};
pub use error::ClientError;
pub use session::{Gap, Session, SessionEvent, SessionOptions, SessionState, SubscribeOptions, TokenSource};
pub use switchyard_proto::v1;
