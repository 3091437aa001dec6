//! When one stream connection must be closed: the first-message deadline, the partial-message (slowloris)
//! deadline and the idle timeout.
//!
//! Sans-IO: [`ConnClock`] is told what happened and when ([`on_read`](ConnClock::on_read),
//! [`on_write`](ConnClock::on_write)); [`next_deadline`](ConnClock::next_deadline) says when to look again, and
//! [`expired`](ConnClock::expired) whether the connection is over and why. The transport sleeps until the deadline
//! and closes the connection when told.

use super::{CloseReason, StreamLimits};
use std::time::{Duration, Instant};

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A peer connected to us: it must send a whole first message in time.
    Accepted,
    /// We connected to a gateway: we speak first, so there is no first-message deadline.
    Connected,
}

/// The timeouts of one connection, from [`StreamLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept to the end of the first complete message.
    pub first_message: Duration,
    /// From the first byte of a message to its last.
    pub message: Duration,
    /// With no traffic either way.
    pub idle: Duration,
}

impl From<&StreamLimits> for Timeouts {
    fn from(l: &StreamLimits) -> Self {
        Self { first_message: l.first_message_timeout, message: l.message_timeout, idle: l.idle_timeout }
    }
}

/// The deadlines of one connection.
#[derive(Debug, Clone)]
pub struct ConnClock {
    timeouts: Timeouts,
    /// Accept time while the first message is awaited; `None` once it came (or for our own connections).
    awaiting_first_since: Option<Instant>,
    /// When the first byte of the message now buffered arrived; `None` when nothing is buffered.
    partial_since: Option<Instant>,
    last_activity: Instant,
}

impl ConnClock {
    /// A connection opened at `now`.
    pub fn new(origin: Origin, now: Instant, timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            awaiting_first_since: (origin == Origin::Accepted).then_some(now),
            partial_since: None,
            last_activity: now,
        }
    }

    /// Bytes arrived at `now`: `complete` whole messages were cut out of the buffer, and `partial` says whether
    /// bytes of an unfinished message remain in it. Keep-alive CRLFs are activity and nothing else.
    pub fn on_read(&mut self, now: Instant, complete: usize, partial: bool) {
        self.last_activity = now;
        if complete > 0 {
            self.awaiting_first_since = None;
        }
        self.partial_since = match (partial, complete > 0, self.partial_since) {
            (false, _, _) => None,
            // What is buffered now began after the last whole message, i.e. in this read.
            (true, true, _) | (true, false, None) => Some(now),
            (true, false, Some(since)) => Some(since),
        };
    }

    /// Bytes were written at `now`.
    pub fn on_write(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// The earliest deadline and what it would close the connection for.
    pub fn next_deadline(&self) -> (Instant, CloseReason) {
        // Order matters for ties: the most specific reason wins.
        [
            self.awaiting_first_since.map(|t| (t + self.timeouts.first_message, CloseReason::FirstMessageTimeout)),
            self.partial_since.map(|t| (t + self.timeouts.message, CloseReason::MessageTimeout)),
            Some((self.last_activity + self.timeouts.idle, CloseReason::Idle)),
        ]
        .into_iter()
        .flatten()
        .fold(None, |best: Option<(Instant, CloseReason)>, d| match best {
            Some(b) if b.0 <= d.0 => Some(b),
            _ => Some(d),
        })
        .expect("the idle deadline always exists")
    }

    /// Why the connection must close at `now`, if it must.
    pub fn expired(&self, now: Instant) -> Option<CloseReason> {
        let (at, reason) = self.next_deadline();
        (now >= at).then_some(reason)
    }
}

/// How long a connection we opened waits for anything after a keep-alive ping (RFC 5626 §4.4.1: 10 s).
pub const PONG_WITHIN: Duration = Duration::from_secs(10);

/// What a connection's keep-alive wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Send a ping (`\r\n\r\n`).
    Ping,
    /// Nothing came back within [`PONG_WITHIN`] of a ping: close the connection.
    Dead,
    /// Nothing to do yet.
    Wait,
}

/// RFC 5626 §4.4.1 keep-alives on a connection we opened: a CRLF ping every interval; any byte received (the pong,
/// or a message) proves the peer alive, and nothing within [`PONG_WITHIN`] of a ping ends the connection, so the
/// next message to the gateway opens a fresh one instead of vanishing into a dead one.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    every: Duration,
    next_ping: Instant,
    waiting_since: Option<Instant>,
}

impl KeepAlive {
    /// Pings every `every`, the first one `every` after `now`.
    pub fn new(now: Instant, every: Duration) -> Self {
        Self { every, next_ping: now + every, waiting_since: None }
    }

    /// When to call [`KeepAlive::poll`] next.
    pub fn next_deadline(&self) -> Instant {
        match self.waiting_since {
            Some(t) => (t + PONG_WITHIN).min(self.next_ping),
            None => self.next_ping,
        }
    }

    /// Bytes arrived.
    pub fn on_read(&mut self) {
        self.waiting_since = None;
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant) -> KeepAliveAction {
        if self.waiting_since.is_some_and(|t| now >= t + PONG_WITHIN) {
            return KeepAliveAction::Dead;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.every;
            self.waiting_since.get_or_insert(now);
            return KeepAliveAction::Ping;
        }
        KeepAliveAction::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timeouts() -> Timeouts {
        Timeouts { first_message: 10 * S, message: 5 * S, idle: 300 * S }
    }

    #[test]
    fn a_silent_connection_closes_at_the_first_message_deadline() {
        let t0 = Instant::now();
        let c = ConnClock::new(Origin::Accepted, t0, timeouts());
        assert_eq!(c.next_deadline(), (t0 + 10 * S, CloseReason::FirstMessageTimeout));
        assert_eq!(c.expired(t0 + 9 * S), None);
        assert_eq!(c.expired(t0 + 10 * S), Some(CloseReason::FirstMessageTimeout));
    }

    #[test]
    fn keepalives_do_not_count_as_a_first_message() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(Origin::Accepted, t0, timeouts());
        for i in 1..=9 {
            c.on_read(t0 + i * S, 0, false);
        }
        assert_eq!(c.expired(t0 + 10 * S), Some(CloseReason::FirstMessageTimeout));
    }

    #[test]
    fn a_message_trickling_in_byte_by_byte_closes_at_the_message_deadline() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(Origin::Accepted, t0, timeouts());
        // First byte at 1 s, one more every 100 ms: the message deadline is 5 s after the first byte.
        for i in 0..45 {
            c.on_read(t0 + S + i * S / 10, 0, true);
        }
        assert_eq!(c.next_deadline(), (t0 + 6 * S, CloseReason::MessageTimeout));
        assert_eq!(c.expired(t0 + 6 * S), Some(CloseReason::MessageTimeout));
    }

    #[test]
    fn the_message_deadline_restarts_with_each_message_and_ends_with_a_whole_one() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(Origin::Accepted, t0, timeouts());
        c.on_read(t0 + S, 0, true);
        // The first message completes at 3 s and the next one's first bytes came with it.
        c.on_read(t0 + 3 * S, 1, true);
        assert_eq!(c.next_deadline(), (t0 + 8 * S, CloseReason::MessageTimeout));
        c.on_read(t0 + 4 * S, 1, false);
        assert_eq!(c.next_deadline(), (t0 + 304 * S, CloseReason::Idle), "nothing buffered: only idle is left");
    }

    #[test]
    fn idle_counts_traffic_both_ways() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(Origin::Accepted, t0, timeouts());
        c.on_read(t0 + S, 1, false);
        c.on_write(t0 + 100 * S);
        assert_eq!(c.expired(t0 + 399 * S), None);
        assert_eq!(c.expired(t0 + 400 * S), Some(CloseReason::Idle));
    }

    #[test]
    fn keepalives_ping_every_interval_and_a_silent_peer_is_dead_ten_seconds_after_a_ping() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(t0, 30 * S);
        assert_eq!((k.next_deadline(), k.poll(t0 + 29 * S)), (t0 + 30 * S, KeepAliveAction::Wait));
        assert_eq!(k.poll(t0 + 30 * S), KeepAliveAction::Ping);
        assert_eq!(k.next_deadline(), t0 + 40 * S, "the pong is due 10 s after the ping");
        k.on_read();
        assert_eq!(k.next_deadline(), t0 + 60 * S);
        assert_eq!(k.poll(t0 + 60 * S), KeepAliveAction::Ping);
        assert_eq!(k.poll(t0 + 69 * S), KeepAliveAction::Wait);
        assert_eq!(k.poll(t0 + 70 * S), KeepAliveAction::Dead);
    }

    #[test]
    fn our_own_connections_have_no_first_message_deadline() {
        let t0 = Instant::now();
        let c = ConnClock::new(Origin::Connected, t0, timeouts());
        assert_eq!(c.next_deadline(), (t0 + 300 * S, CloseReason::Idle));
    }

    #[test]
    fn the_first_message_deadline_wins_when_it_comes_first() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(Origin::Accepted, t0, timeouts());
        // A partial message started at 8 s would have until 13 s, but the first message is due at 10 s.
        c.on_read(t0 + 8 * S, 0, true);
        assert_eq!(c.next_deadline(), (t0 + 10 * S, CloseReason::FirstMessageTimeout));
    }
}
