//! The live connections of a node: counted against the node's limit before
//! the upgrade, reachable for the drain, and indexed by user so that a user
//! operation costs the connections of that user, not a scan.

use super::server_ops::{OpSender, ServerOp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::hub::ConnId;
use switchyard_core::metric;
use switchyard_core::outbound::Outbound;

pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    /// 0: no limit per address.
    max_per_ip: usize,
    /// Permits handed out: connections open plus upgrades under way.
    permits: AtomicUsize,
    /// Permits per client address, while `max_per_ip` is set.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: Mutex<HashMap<ConnId, Outbound>>,
    /// Where each user's sessions take server operations, by user.
    users: Mutex<HashMap<String, HashMap<ConnId, OpSender>>>,
}

/// A session's entry in the index by user; leaves it when dropped.
pub struct UserRegistration {
    inner: Arc<Inner>,
    user: String,
    id: ConnId,
}

impl Drop for UserRegistration {
    fn drop(&mut self) {
        let mut users = self.inner.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sessions) = users.get_mut(&self.user) {
            sessions.remove(&self.id);
            if sessions.is_empty() {
                users.remove(&self.user);
            }
        }
    }
}

/// Why there is no place for another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The node holds `limits.max_connections`.
    Node,
    /// This address holds `limits.max_connections_per_ip`.
    Address,
}

/// A place under the connection limits, held from before the upgrade to
/// the end of the connection.
pub struct Permit {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.permits.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut per_ip = self.inner.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A registered connection; unregisters itself when dropped.
pub struct Registration {
    inner: Arc<Inner>,
    id: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        metric::connections().decrement(1.0);
    }
}

impl Connections {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        Connections {
            inner: Arc::new(Inner {
                max,
                max_per_ip,
                permits: AtomicUsize::new(0),
                per_ip: Mutex::new(HashMap::new()),
                open: Mutex::new(HashMap::new()),
                users: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A permit for a client at `ip`, unless a limit is reached.
    pub fn try_permit(&self, ip: IpAddr) -> Result<Permit, NoRoom> {
        let before = self.inner.permits.fetch_add(1, Ordering::AcqRel);
        // From here on, dropping the permit gives the place back.
        let mut permit = Permit { inner: self.inner.clone(), ip: None };
        if before >= self.inner.max {
            return Err(NoRoom::Node);
        }
        if self.inner.max_per_ip > 0 {
            let mut per_ip = self.inner.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.inner.max_per_ip {
                return Err(NoRoom::Address);
            }
            *count += 1;
            permit.ip = Some(ip);
        }
        Ok(permit)
    }

    pub fn register(&self, id: ConnId, outbound: Outbound) -> Registration {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, outbound);
        metric::connections().increment(1.0);
        metric::connections_accepted().increment(1);
        Registration { inner: self.inner.clone(), id }
    }

    /// Enters session `id` of `user` in the index, unless the user holds
    /// `max` sessions on this node already (0: no limit).
    pub fn register_user(&self, user: &str, id: ConnId, ops: OpSender, max: usize) -> Option<UserRegistration> {
        let mut users = self.inner.users.lock().unwrap_or_else(|e| e.into_inner());
        let sessions = users.entry(user.to_owned()).or_default();
        if max > 0 && sessions.len() >= max && !sessions.contains_key(&id) {
            return None;
        }
        sessions.insert(id, ops);
        Some(UserRegistration { inner: self.inner.clone(), user: user.to_owned(), id })
    }

    /// Hands an operation to every session of `user` on this node; a
    /// session whose queue of operations is full misses it (counted).
    pub fn to_user(&self, user: &str, op: impl Fn() -> ServerOp) -> usize {
        let targets: Vec<_> = {
            let users = self.inner.users.lock().unwrap_or_else(|e| e.into_inner());
            users.get(user).map(|sessions| sessions.values().cloned().collect()).unwrap_or_default()
        };
        let mut handed = 0;
        for target in targets {
            match target.try_send(op()) {
                Ok(()) => handed += 1,
                Err(_) => metric::control_dropped().increment(1),
            }
        }
        handed
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The outbound queues of every open connection, for the drain.
    pub fn snapshot(&self) -> Vec<Outbound> {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}
