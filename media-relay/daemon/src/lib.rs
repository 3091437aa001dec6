//! The media relay daemon: drives `relay-proto`'s data plane ([`relay_proto::flow::Table`]) with real sockets.
//!
//! - [`relay`]: the forwarding threads (sessions spread over them, one per core by default): one UDP socket per
//!   relay endpoint, batched receive (recvmmsg, GRO) and send (GSO when a batch goes to one peer), the idle
//!   check, counters per thread.
//! - [`coalesce`]: wake-up coalescing of the forwarding threads under load.
//! - [`poller`]: one epoll per forwarding thread: the readiness of all its sockets, read by one task.
//! - [`control`]: the control socket of a standalone relay: the same [`relay_proto::control`] commands and
//!   events as JSON lines over TCP.
//!
//! - [`ng`]: the NG listener of a standalone relay (rtpengine's control protocol, for Kamailio and OpenSIPS).
//!
//! `sbc` runs [`relay::Relay`] in-process by default; `media-relay` is the same relay as its own program.

pub mod coalesce;
pub mod control;
pub mod ng;
pub mod poller;
pub mod relay;
pub mod xdp;
