//! What this node holds of each consumer, for its registry entry (the
//! admin page shows every node's).

use std::collections::BTreeMap;
use std::sync::Mutex;
use switchyard_broker::ConsumerShare;

/// Partitions held and lag, by consumer and partition.
#[derive(Default)]
pub struct ConsumerShares {
    held: Mutex<BTreeMap<String, BTreeMap<u32, u64>>>,
}

impl ConsumerShares {
    /// This node holds `partition` of `consumer`, with `lag` entries to go.
    pub fn holding(&self, consumer: &str, partition: u32, lag: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.entry(consumer.to_owned()).or_default().insert(partition, lag);
    }

    /// This node no longer holds `partition` of `consumer`.
    pub fn released(&self, consumer: &str, partition: u32) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(partitions) = held.get_mut(consumer) {
            partitions.remove(&partition);
            if partitions.is_empty() {
                held.remove(consumer);
            }
        }
    }

    /// By consumer: partitions held and their summed lag.
    pub fn snapshot(&self) -> BTreeMap<String, ConsumerShare> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .map(|(name, partitions)| {
                let share = ConsumerShare { partitions: partitions.len() as u32, lag: partitions.values().sum() };
                (name.clone(), share)
            })
            .collect()
    }
}
