//! This node's presence entries: its clients on channels that track
//! presence, by channel and client id. The presence refresher keeps them
//! alive in the store; a node that dies stops refreshing and its entries
//! expire.

use std::collections::HashMap;
use std::sync::Mutex;
use switchyard_core::metric;
use switchyard_proto::v1::ClientInfo;

#[derive(Default)]
pub struct LocalPresence {
    channels: Mutex<HashMap<String, HashMap<String, ClientInfo>>>,
}

impl LocalPresence {
    pub fn insert(&self, channel: &str, member: ClientInfo) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if channels.entry(channel.to_owned()).or_default().insert(member.client.clone(), member).is_none() {
            metric::presence_members().increment(1.0);
        }
    }

    pub fn remove(&self, channel: &str, client: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(members) = channels.get_mut(channel) else { return };
        if members.remove(client).is_some() {
            metric::presence_members().decrement(1.0);
        }
        if members.is_empty() {
            channels.remove(channel);
        }
    }

    /// The entry of `client` in `channel`, if this node holds one.
    pub fn get(&self, channel: &str, client: &str) -> Option<ClientInfo> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(channel)?.get(client).cloned()
    }

    /// Every channel with entries here, with its client ids.
    pub fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.iter().map(|(channel, members)| (channel.clone(), members.keys().cloned().collect())).collect()
    }
}
