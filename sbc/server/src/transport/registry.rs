//! The open stream connections (TCP and TLS), by id and by transport and remote address, so the driver can send
//! on them; the per-source table that admits them; and the messages waiting for a connection being opened.

use super::stream::{Admitted, LogThrottle, Refusal, SourceClass, SourceTable, StreamLimits};
use super::{ConnId, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages queued for one connection's writer before we consider the peer stuck and close it.
pub const WRITE_QUEUE: usize = 256;
/// Messages held at most for a connection being opened; more are dropped (counted): the transactions that sent
/// them retransmit nothing over a reliable transport, so they time out or fail over.
pub const DIAL_QUEUE: usize = 64;
/// At most one log line per interval for connections closed on bad input, however many connections send it.
pub const BAD_INPUT_LOG_EVERY: Duration = Duration::from_secs(10);

/// A stream connection's key for sending: the transport and the peer's address.
pub type Remote = (Transport, SocketAddr);

/// The open connections, shared by the transports and the driver.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Debug)]
pub(super) struct Registry {
    by_id: HashMap<ConnId, Conn>,
    by_remote: HashMap<Remote, ConnId>,
    /// Messages for connections being opened, by where they go.
    pending: HashMap<Remote, Vec<Bytes>>,
    sources: SourceTable,
    /// One line per interval for connections closed on bad input, however many connections send it.
    pub(super) bad_input_log: LogThrottle,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            by_remote: HashMap::new(),
            pending: HashMap::new(),
            sources: SourceTable::default(),
            bad_input_log: LogThrottle::new(BAD_INPUT_LOG_EVERY),
        }
    }
}

#[derive(Debug)]
struct Conn {
    remote: Remote,
    tx: mpsc::Sender<Bytes>,
}

/// Why a send on a stream transport did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is gone (closed by the peer, reaped, or never existed).
    #[error("no {0} connection to {1}")]
    NoConnection(Transport, SocketAddr),
    /// The peer does not read fast enough; the connection is being closed.
    #[error("{0} connection to {1} is not draining; closed")]
    Stuck(Transport, SocketAddr),
}

/// What [`Connections::queue_for_dial`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// The first message for this destination: open a connection.
    Dial,
    /// A connection is being opened already; the message waits for it.
    Waiting,
    /// Too many messages wait already; this one is dropped.
    Full,
}

impl Connections {
    /// Number of open connections (admitted and not yet closed).
    pub fn len(&self) -> usize {
        self.lock().sources.total()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open connections from `ip`'s source (its address; its /64 for IPv6).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().sources.open_from(ip)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in a few lines below; poisoning adds nothing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip` of `class`, or says why not. The slot releases itself when dropped.
    pub(super) fn admit(&self, ip: IpAddr, class: SourceClass, limits: &StreamLimits) -> Result<Slot, Refusal> {
        let mut r = self.lock();
        let admitted = r.sources.admit(ip, class, limits)?;
        r.publish();
        Ok(Slot { conns: self.clone(), admitted: Some(admitted), id: None })
    }

    /// Queues `bytes` on connection `conn` if it is open, else on any connection over `transport` to `remote`. A
    /// full queue closes the connection: a peer that does not read would otherwise hold our memory.
    pub fn send(
        &self,
        transport: Transport,
        conn: Option<ConnId>,
        remote: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        let (id, tx) = {
            let r = self.lock();
            let id =
                conn.filter(|c| r.by_id.contains_key(c)).or_else(|| r.by_remote.get(&(transport, remote)).copied());
            id.and_then(|id| r.by_id.get(&id).map(|c| (id, c.tx.clone())))
                .ok_or(SendError::NoConnection(transport, remote))?
        };
        tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                // Dropping the registry's sender ends the connection's writer once the queue is written or the
                // write deadline passes; the connection then closes as `write_queue_full`.
                self.lock().forget(id);
                SendError::Stuck(transport, remote)
            }
            mpsc::error::TrySendError::Closed(_) => SendError::NoConnection(transport, remote),
        })
    }

    /// Holds `bytes` for a connection to `remote` that is (or is about to be) opened.
    pub fn queue_for_dial(&self, remote: Remote, bytes: Bytes) -> Queued {
        let mut r = self.lock();
        match r.pending.get_mut(&remote) {
            Some(q) if q.len() >= DIAL_QUEUE => Queued::Full,
            Some(q) => {
                q.push(bytes);
                Queued::Waiting
            }
            None => {
                r.pending.insert(remote, vec![bytes]);
                Queued::Dial
            }
        }
    }

    /// The messages that waited for a connection to `remote` that could not be opened: they are dropped.
    pub fn fail_dial(&self, remote: Remote) -> usize {
        self.lock().pending.remove(&remote).map_or(0, |q| q.len())
    }
}

impl Registry {
    fn forget(&mut self, id: ConnId) {
        if let Some(c) = self.by_id.remove(&id) {
            if self.by_remote.get(&c.remote) == Some(&id) {
                self.by_remote.remove(&c.remote);
            }
        }
    }

    fn publish(&self) {
        use crate::metrics as m;
        metrics::gauge!(m::TCP_CONNECTIONS_ACTIVE).set(self.sources.total() as f64);
        metrics::gauge!(m::TCP_SOURCES_ACTIVE).set(self.sources.sources() as f64);
        for class in [SourceClass::Trunk, SourceClass::Other] {
            metrics::gauge!(m::TCP_SOURCE_PEAK, "class" => class.label()).set(self.sources.peak(class) as f64);
        }
    }
}

/// One admitted connection's place in [`Connections`]: registered for sending once it runs, released from the
/// registry and the source table when dropped, however the connection's task ends.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) conns: Connections,
    admitted: Option<Admitted>,
    id: Option<ConnId>,
}

impl Slot {
    /// Registers the running connection to `remote` with its writer's queue `tx`. Messages that waited for this
    /// connection to open go into the queue first, in order, under the same lock, so none overtakes them.
    pub(super) fn register(&mut self, remote: Remote, tx: mpsc::Sender<Bytes>) -> ConnId {
        let id = ConnId(self.conns.next_id.fetch_add(1, Ordering::Relaxed));
        let mut r = self.conns.lock();
        for bytes in r.pending.remove(&remote).unwrap_or_default() {
            if tx.try_send(bytes).is_err() {
                crate::metrics::dropped("connect_queue_full");
            }
        }
        r.by_id.insert(id, Conn { remote, tx });
        r.by_remote.insert(remote, id);
        self.id = Some(id);
        id
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.conns.lock();
        if let Some(id) = self.id {
            r.forget(id);
        }
        if let Some(a) = self.admitted.take() {
            r.sources.release(a);
        }
        r.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wait_for_a_dial_in_order_and_bounded() {
        let conns = Connections::default();
        let remote = (Transport::Tls, "198.18.2.10:5061".parse().expect("addr"));
        assert_eq!(conns.queue_for_dial(remote, Bytes::from_static(b"1")), Queued::Dial);
        for i in 2..=DIAL_QUEUE {
            assert_eq!(conns.queue_for_dial(remote, Bytes::from(i.to_string())), Queued::Waiting);
        }
        assert_eq!(conns.queue_for_dial(remote, Bytes::from_static(b"late")), Queued::Full);
        let mut slot =
            conns.admit(remote.1.ip(), SourceClass::Ours, &StreamLimits::default()).expect("ours are admitted");
        let (tx, mut rx) = mpsc::channel(WRITE_QUEUE);
        slot.register(remote, tx);
        let first: Vec<Bytes> = (0..DIAL_QUEUE).map(|_| rx.try_recv().expect("queued")).collect();
        assert_eq!((&first[0][..], &first[DIAL_QUEUE - 1][..]), (&b"1"[..], DIAL_QUEUE.to_string().as_bytes()));
        assert!(conns.send(Transport::Tls, None, remote.1, Bytes::from_static(b"next")).is_ok());
        assert!(conns.send(Transport::Tcp, None, remote.1, Bytes::from_static(b"x")).is_err(), "TCP is another key");
        assert_eq!(conns.queue_for_dial(remote, Bytes::from_static(b"again")), Queued::Dial, "nothing pending");
        assert_eq!(conns.fail_dial(remote), 1);
        drop(slot);
        assert!(conns.is_empty());
    }
}
