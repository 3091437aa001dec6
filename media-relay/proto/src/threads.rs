//! Which forwarding thread a command goes to: the relay spreads sessions over several threads, each holding its
//! sessions' sockets and table entries alone, so that no packet crosses a thread or takes a lock. Every command of
//! a session must reach the thread that holds it, whoever sends it and in whatever order: the thread is a pure
//! function of the session's number, so the sender keeps no table of its own.
//!
//! The number is mixed before it is reduced (splitmix64's finalizer): a signalling side that numbers its calls
//! 1, 2, 3, … or with a stride (a pair's nodes, odd and even) still spreads them evenly on average. One thread,
//! [`OWNER`], also does the relay-wide work that is not a session's (bans, the kernel program's global counters)
//! and answers pings.

use crate::control::{Command, SessionId};
use std::num::NonZeroUsize;

/// The thread that does the relay-wide work and answers [`Command::Ping`].
pub const OWNER: usize = 0;

/// The thread (`0..threads`) that holds `session`.
pub fn thread_of(session: SessionId, threads: NonZeroUsize) -> usize {
    let mut x = session.0;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // The remainder of a well-mixed 64-bit number: the bias is below 2^-59 for any thread count.
    (x % threads.get() as u64) as usize
}

/// The thread (`0..threads`) that `cmd` goes to: its session's, or [`OWNER`] for relay-wide commands.
pub fn thread_for(cmd: &Command, threads: NonZeroUsize) -> usize {
    match cmd {
        Command::Upsert(spec) => thread_of(spec.session, threads),
        Command::Webrtc(spec) | Command::WebrtcResume { spec, .. } => thread_of(spec.session, threads),
        Command::Remove { session } | Command::Query { session } => thread_of(*session, threads),
        Command::Ping { .. } | Command::Ban { .. } | Command::Unban { .. } => OWNER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(k: usize) -> NonZeroUsize {
        NonZeroUsize::new(k).unwrap()
    }

    #[test]
    fn one_thread_holds_every_session() {
        assert!((0..1000).all(|s| thread_of(SessionId(s), n(1)) == 0));
    }

    #[test]
    fn a_session_always_lands_on_the_same_thread_in_range() {
        for threads in 1..=8 {
            for s in 0..500 {
                let t = thread_of(SessionId(s), n(threads));
                assert!(t < threads, "session {s} on thread {t} of {threads}");
                assert_eq!(t, thread_of(SessionId(s), n(threads)));
            }
        }
    }

    #[test]
    fn sequential_and_strided_session_numbers_spread_evenly() {
        // 10 000 sessions over 2 and 4 threads: each thread within 5 % of its fair share.
        for (threads, stride) in [(2, 1), (2, 2), (4, 1), (4, 2), (4, 4)] {
            let mut per = vec![0u32; threads];
            for s in 0..10_000u64 {
                per[thread_of(SessionId(1 + s * stride), n(threads))] += 1;
            }
            let fair = 10_000 / threads as u32;
            for (t, &k) in per.iter().enumerate() {
                assert!(k.abs_diff(fair) < fair / 20, "threads {threads}, stride {stride}: thread {t} holds {k}");
            }
        }
    }

    #[test]
    fn a_sessions_commands_go_to_its_thread_and_relay_wide_ones_to_the_owner() {
        let threads = n(2);
        // Two sessions on different threads (found, not assumed: the mix decides).
        let a = (1..).map(SessionId).find(|&s| thread_of(s, threads) == 0).unwrap();
        let b = (1..).map(SessionId).find(|&s| thread_of(s, threads) == 1).unwrap();
        for s in [a, b] {
            assert_eq!(thread_for(&Command::Remove { session: s }, threads), thread_of(s, threads));
        }
        assert_eq!(thread_for(&Command::Remove { session: b }, threads), 1);
        let addr = std::net::IpAddr::from([198, 18, 0, 1]);
        assert_eq!(thread_for(&Command::Ping { seq: 1 }, threads), OWNER);
        assert_eq!(thread_for(&Command::Ban { addr, reason: 1 }, threads), OWNER);
        assert_eq!(thread_for(&Command::Unban { addr }, threads), OWNER);
    }
}
