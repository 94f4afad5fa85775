//! A client that follows a channel with history across node restarts: on
//! every close it reconnects (wherever it is told) with its resume token,
//! and records what it saw, so a test can check that nothing was lost.

use std::sync::{Arc, Mutex};
use switchyard_client::v1::ConnectRequest;
use switchyard_client::{Client, Encoding, Event, Options};

/// What one follower saw: offsets per connection, and every close (None:
/// the socket went away without a close frame).
#[derive(Debug, Default)]
pub struct Seen {
    pub connections: Vec<Vec<u64>>,
    pub closes: Vec<Option<u16>>,
}

impl Seen {
    /// Every offset from 1 to `last` arrived, and each connection got its
    /// own in order with no holes.
    pub fn assert_complete(&self, last: u64) {
        for offsets in &self.connections {
            for pair in offsets.windows(2) {
                assert_eq!(pair[1], pair[0] + 1, "a hole or a reorder within one connection: {offsets:?}");
            }
        }
        let mut all: Vec<u64> = self.connections.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, (1..=last).collect::<Vec<_>>(), "offsets lost");
    }

    /// Subscribed at least once.
    pub fn is_in(&self) -> bool {
        !self.connections.is_empty()
    }
}

/// Connects (resuming if `resume` is given) and, for a new session,
/// subscribes; returns the client and its next resume token. Err when the
/// connection failed before the reply: the node it reached was going away
/// (the balancer had not marked it down yet), and a client tries again.
async fn join(url: &str, channel: &str, resume: Option<String>) -> Result<(Client, String), String> {
    let client = Client::connect(url, Options::new(Encoding::Json)).await.map_err(|e| format!("connect: {e}"))?;
    let request = ConnectRequest { resume: resume.clone().unwrap_or_default(), ..Default::default() };
    let reply = client.connect_with(request).await.map_err(|e| format!("connect command: {e:?}"))?;
    if resume.is_some() {
        assert_eq!(reply.resumed, Some(true), "the session was resumed");
        let resumed = &reply.channels[0];
        assert_eq!((resumed.channel.as_str(), resumed.recovered), (channel, true));
    } else {
        client.subscribe(channel).await.map_err(|e| format!("subscribe: {e:?}"))?;
    }
    Ok((client, reply.session))
}

/// [`join`] at whatever URL `next` holds, again after a failure (as a
/// client reconnects with a backoff), a bounded number of times.
async fn join_retrying(next: &Mutex<String>, channel: &str, resume: Option<String>) -> (Client, String) {
    const ATTEMPTS: u32 = 100;
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        let url = next.lock().unwrap().clone();
        match join(&url, channel, resume.clone()).await {
            Ok(joined) => return joined,
            Err(why) => failures.push(why),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("could not join {channel} in {ATTEMPTS} attempts: {failures:?}");
}

/// Reads publications, acking every 10th, until offset `last` (None) or a
/// close (Some: its code).
async fn read_until_close(client: &mut Client, channel: &str, seen: &Mutex<Seen>, last: u64) -> Option<Option<u16>> {
    loop {
        match client.next_event().await {
            Some(Event::Publication(p)) => {
                let offset = p.offset.expect("a channel with history");
                seen.lock().unwrap().connections.last_mut().expect("a connection").push(offset);
                if offset % 10 == 0 {
                    let _ = client.ack(channel, offset).await;
                }
                if offset == last {
                    return None;
                }
            }
            Some(Event::Closed(close)) => return Some(close.map(|(code, _)| code)),
            Some(_) => {}
            None => return Some(None),
        }
    }
}

/// Follows `channel` from `first` until it has seen offset `last`; after a
/// close it resumes at whatever URL `next` holds then, trying again while
/// the node it reaches is going away.
pub async fn follow(channel: String, first: String, next: Arc<Mutex<String>>, last: u64, seen: Arc<Mutex<Seen>>) {
    let (mut client, mut token) = join_retrying(&Mutex::new(first), &channel, None).await;
    seen.lock().unwrap().connections.push(Vec::new());
    loop {
        let Some(close) = read_until_close(&mut client, &channel, &seen, last).await else { return };
        seen.lock().unwrap().closes.push(close);
        let (resumed, next_token) = join_retrying(&next, &channel, Some(token)).await;
        client = resumed;
        token = next_token;
        seen.lock().unwrap().connections.push(Vec::new());
    }
}
