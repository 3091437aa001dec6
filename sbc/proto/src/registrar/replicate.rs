//! Bindings as replication records ([`BindingRecord`]) and back: times cross as "milliseconds left", so the two
//! boxes' clocks never need to agree.

use super::{Binding, BindingChange, FlowKey};
use crate::ha::{BindingRecord, Record};
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::time::{Duration, Instant};

impl BindingChange {
    /// The record of this change, made at `now`.
    pub fn record(&self, now: Instant) -> Record {
        let b = self.binding.as_ref();
        let flow = b.map(|b| b.flow);
        let text = |v: &Bytes| String::from_utf8_lossy(v).into_owned();
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Record::Binding(Box::new(BindingRecord {
            user: self.user.clone(),
            contact: text(&self.contact),
            instance: b.and_then(|b| b.instance.as_ref()).or(self.flow_key.as_ref().map(|k| &k.instance)).map(text),
            reg_id: self.flow_key.as_ref().map(|k| k.reg_id),
            transport: flow.map_or(Transport::Udp, |f| f.transport).as_str().to_owned(),
            local: flow.map_or(unspecified, |f| f.local),
            remote: flow.map_or(unspecified, |f| f.remote),
            expires_in_ms: b.map(|b| b.expires.saturating_duration_since(now).as_millis() as u64),
            call_id: b.map(|b| text(&b.call_id)).unwrap_or_default(),
            cseq: b.map_or(0, |b| b.cseq),
        }))
    }

    /// The change a record stands for, received at `now`; `None` for a transport this build does not know.
    pub fn from_record(r: &BindingRecord, now: Instant) -> Option<Self> {
        let transport = match r.transport.as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        };
        let contact = Bytes::from(r.contact.clone());
        // A record without `reg_id` (format 3 as first written, or no outbound binding) is keyed by its Contact.
        let flow_key = r.instance.clone().zip(r.reg_id).map(|(i, reg_id)| FlowKey { instance: Bytes::from(i), reg_id });
        let binding = r.expires_in_ms.map(|ms| Binding {
            contact: contact.clone(),
            instance: r.instance.clone().map(Bytes::from),
            reg_id: flow_key.as_ref().map(|k| k.reg_id),
            // The connection is the other box's: a call goes to the address (see `Registrar::apply`).
            flow: Peer { transport, local: r.local, remote: r.remote, conn: None },
            expires: now + Duration::from_millis(ms),
            call_id: Bytes::from(r.call_id.clone()),
            cseq: r.cseq,
        });
        Some(Self { user: r.user.clone(), binding, contact, flow_key })
    }
}
