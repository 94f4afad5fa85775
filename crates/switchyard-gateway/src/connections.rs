//! The live connections of a node: counted against the node's limit before
//! the upgrade, and reachable for the drain.

use std::collections::HashMap;
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
    /// Permits handed out: connections open plus upgrades under way.
    permits: AtomicUsize,
    open: Mutex<HashMap<ConnId, Outbound>>,
}

/// A place under the connection limit, held from before the upgrade to the
/// end of the connection.
pub struct Permit {
    inner: Arc<Inner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.permits.fetch_sub(1, Ordering::AcqRel);
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
    pub fn new(max: usize) -> Self {
        Connections { inner: Arc::new(Inner { max, permits: AtomicUsize::new(0), open: Mutex::new(HashMap::new()) }) }
    }

    /// A permit, unless the node holds its limit already.
    pub fn try_permit(&self) -> Option<Permit> {
        let before = self.inner.permits.fetch_add(1, Ordering::AcqRel);
        if before >= self.inner.max {
            self.inner.permits.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit { inner: self.inner.clone() })
    }

    pub fn register(&self, id: ConnId, outbound: Outbound) -> Registration {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, outbound);
        metric::connections().increment(1.0);
        metric::connections_accepted().increment(1);
        Registration { inner: self.inner.clone(), id }
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
