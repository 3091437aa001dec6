//! The forwarding thread's part in WebRTC legs: sending the datagrams the table makes itself (STUN answers, DTLS
//! flights) and firing the legs' timers (handshake retransmissions, consent). The decisions are the table's
//! ([`relay_proto::webrtc`]); this only moves bytes and keeps time.
//!
//! Timers are looked at when the thread's loop wakes: on its own deadline, a command, or the idle tick
//! (`idle_check`, 1 s by default). A timer armed by a packet (the ClientHello after the first STUN check) is
//! therefore seen within one tick; DTLS retransmits 1 s apart and consent runs 30 s, so that is early enough.

use super::{add, Shared};
use quinn_udp::Transmit;
use std::time::Instant;

/// The earliest WebRTC timer of the thread's table.
pub(super) fn next_timer(shared: &Shared) -> Option<Instant> {
    shared.table.borrow().poll_timeout()
}

/// Resolves at `due`; never without one.
pub(super) async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Fires the timers that are due: retransmissions go out, ended legs go to the signalling side.
pub(super) fn fire_timers(shared: &Shared) {
    shared.table.borrow_mut().handle_timeout(Instant::now());
    send_transmits(shared);
    while let Some(ev) = shared.table.borrow_mut().poll_event() {
        let _ = shared.events.send(ev);
    }
}

/// Sends what the table queued of its own accord, each from the socket it names.
pub(super) fn send_transmits(shared: &Shared) {
    let mut table = shared.table.borrow_mut();
    let socks = shared.socks.borrow();
    while let Some(t) = table.poll_transmit() {
        let Some(s) = socks.get(&t.from) else { continue };
        let datagram = Transmit { destination: t.to, ecn: None, contents: &t.bytes, segment_size: None, src_ip: None };
        if s.state.try_send((&s.io).into(), &datagram).is_err() {
            add(&shared.counters.send_errors, 1);
        }
    }
}
