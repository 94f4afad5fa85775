//! The subscribers of a run: each reads and times its deliveries; at the
//! end they close and hand back their histograms.

use crate::connection::{self, Reader, Writer};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Audience {
    readers: Vec<JoinHandle<Histogram<u64>>>,
    /// By client index where the scenario names its clients.
    writers: Vec<Option<Writer>>,
    /// Connections that never read (slow consumers): held open, not timed.
    stalled: Vec<(Reader, Writer)>,
    delivered: Arc<AtomicU64>,
    /// Stops the subscribers that read Server-Sent Events (no socket to close).
    stop_streams: tokio::sync::watch::Sender<bool>,
}

impl Audience {
    pub fn new() -> Audience {
        Audience {
            readers: Vec::new(),
            writers: Vec::new(),
            stalled: Vec::new(),
            delivered: Arc::default(),
            stop_streams: tokio::sync::watch::channel(false).0,
        }
    }

    /// A subscriber that reads and times every delivery.
    pub fn add(&mut self, reader: Reader, writer: Writer) {
        self.readers.push(connection::receive(reader, self.delivered.clone()));
        self.writers.push(Some(writer));
    }

    /// Client `i`'s connection from now on; returns the one it replaces,
    /// for the caller to close (its reader ends then, and its histogram
    /// still counts).
    pub fn replace(&mut self, i: usize, reader: Reader, writer: Writer) -> Option<Writer> {
        self.readers.push(connection::receive(reader, self.delivered.clone()));
        if self.writers.len() <= i {
            self.writers.resize_with(i + 1, || None);
        }
        self.writers[i].replace(writer)
    }

    /// A subscriber over Server-Sent Events on `channel`.
    pub async fn add_stream(&mut self, url: &str, channel: &str) -> anyhow::Result<()> {
        let stop = self.stop_streams.subscribe();
        self.readers.push(connection::subscribe_sse(url, channel, self.delivered.clone(), stop).await?);
        Ok(())
    }

    /// A subscriber that never reads.
    pub fn add_stalled(&mut self, reader: Reader, writer: Writer) {
        self.stalled.push((reader, writer));
    }

    /// Deliveries to reading subscribers so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Waits for stragglers: until `expected` deliveries arrived, 2 s went
    /// by with none, or `late_limit` passed (a saturated peer can be minutes
    /// behind; what has not arrived by then counts as lost).
    pub async fn settle(&self, expected: u64, late_limit: Duration) {
        let mut last = self.delivered();
        let mut quiet = 0;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        let give_up = tokio::time::Instant::now() + late_limit;
        while self.delivered() < expected && quiet < 20 && tokio::time::Instant::now() < give_up {
            poll.tick().await;
            let now = self.delivered();
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
    }

    /// Closes every subscriber; each reader ends on the server's close frame
    /// (or after 5 s) and hands back its histogram, merged here.
    pub async fn close(self) -> anyhow::Result<Histogram<u64>> {
        let Audience { readers, mut writers, stalled, stop_streams, .. } = self;
        drop(stalled);
        let _ = stop_streams.send(true);
        for writer in writers.iter_mut().flatten() {
            connection::close(writer).await;
        }
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for reader in readers {
            if let Ok(Ok(histogram)) = tokio::time::timeout(Duration::from_secs(5), reader).await {
                latency.add(histogram)?;
            }
        }
        Ok(latency)
    }
}
