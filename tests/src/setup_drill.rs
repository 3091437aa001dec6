//! Calls caught in assorted setup states by a hot-standby drill (issue 19): each [`SetupKind`] dials its own prefix,
//! routed to its own carrier (a SIPp UAS on its own port of 198.18.2.10) from its own caller port of 198.18.1.10,
//! so one `kill -9` of the active box finds calls trying, ringing, in early media and waiting for a PRACK. Used by
//! `tests/tests/ha_pair.rs` and `sbc-bench failover --kind setup`.
//!
//! Every SIPp run is bounded by [`SetupTiming::limit`] and killed on drop.

use crate::netns::{addr, Host, Topology, CALLER, CARRIER_B, VIP_A};
use crate::sipp::{Running, Sipp};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A state a call can be in when the active box dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetupKind {
    /// The carrier said 100 Trying and answers late, without ringing.
    Trying,
    /// The carrier rings (180), then answers.
    Ringing,
    /// The carrier sends 183 with SDP (early media, RTP flowing), then answers.
    EarlyMedia,
    /// The carrier's 183 is reliable (100rel) and the caller is slow to PRACK it.
    WaitingForPrack,
}

impl SetupKind {
    /// Every kind, in the order calls are split among them.
    pub const ALL: [Self; 4] = [Self::Trying, Self::Ringing, Self::EarlyMedia, Self::WaitingForPrack];

    /// For reports and messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Trying => "trying",
            Self::Ringing => "ringing",
            Self::EarlyMedia => "early_media",
            Self::WaitingForPrack => "waiting_for_prack",
        }
    }

    fn index(self) -> u16 {
        match self {
            Self::Trying => 0,
            Self::Ringing => 1,
            Self::EarlyMedia => 2,
            Self::WaitingForPrack => 3,
        }
    }

    /// The number its caller dials (the route prefix is its first five characters).
    pub fn number(self) -> String {
        format!("+493{}123456", self.index() + 1)
    }

    fn trunk(self) -> String {
        format!("carrier-{}", self.label().replace('_', "-"))
    }

    /// The carrier's SIP port on 198.18.2.10 (5060 is the answering carrier of the pair's own config).
    pub fn carrier_port(self) -> u16 {
        5062 + self.index()
    }

    /// The caller's SIP port on 198.18.1.10 (5060 is left to the callers of answered calls).
    pub fn caller_port(self) -> u16 {
        5061 + self.index()
    }

    /// Whether the caller hears ringing (180 or 183) before the answer.
    pub fn rings(self) -> bool {
        self != Self::Trying
    }

    /// The kind of a CDR, by its called number.
    pub fn of_cdr(cdr: &serde_json::Value) -> Option<Self> {
        let called = cdr["called_in"].as_str()?;
        Self::ALL.into_iter().find(|k| called == k.number())
    }

    /// How long after its INVITE a call of this kind is answered (the carrier's pause, or the caller's before its
    /// PRACK, which the carrier answers at once).
    pub fn answer_after(self, t: &SetupTiming) -> Duration {
        match self {
            Self::WaitingForPrack => t.prack_after,
            _ => t.answer_after,
        }
    }
}

/// The `[[trunk]]` and `[[route]]` tables that send each kind to its carrier, to append to a pair box's config
/// (after its `[ha]` keys).
pub fn config_tables() -> String {
    SetupKind::ALL
        .iter()
        .map(|k| {
            format!(
                "\n[[trunk]]\nname = \"{}\"\ngateways = [\"udp:{CARRIER_B}:{}\"]\n\n[[route]]\nprefix = \"{}\"\n\
                 to = [{{ trunk = \"{}\", priority = 1 }}]\n",
                k.trunk(),
                k.carrier_port(),
                &k.number()[..5],
                k.trunk()
            )
        })
        .collect()
}

/// The pace of a drill's calls.
#[derive(Debug, Clone)]
pub struct SetupTiming {
    /// Trying, ringing and early-media calls are answered this long after their INVITE.
    pub answer_after: Duration,
    /// Calls waiting for a PRACK get it this long after the 183 (then the carrier answers at once).
    pub prack_after: Duration,
    /// Answered calls last this long, then the caller hangs up.
    pub hold: Duration,
    /// Calls per second of each kind's caller.
    pub rate: u32,
    /// Every SIPp run ends within this.
    pub limit: Duration,
    /// The RTP port the early-media calls' SDP names on both sides (the test's RTP senders bind it); the other kinds
    /// name `quiet_rtp_port`, where nothing is sent.
    pub early_rtp_port: u16,
    /// See `early_rtp_port`.
    pub quiet_rtp_port: u16,
}

/// One kind's carrier and caller, running.
#[derive(Debug)]
pub struct KindCalls {
    /// The kind.
    pub kind: SetupKind,
    /// Its calls.
    pub calls: u32,
    /// The carrier (SIPp UAS).
    pub uas: Running,
    /// The caller (SIPp UAC).
    pub uac: Running,
}

/// How one kind's calls ended, from its caller's and carrier's SIPp statistics.
#[derive(Debug, Clone, Copy)]
pub struct KindOutcome {
    /// The kind.
    pub kind: SetupKind,
    /// Calls placed.
    pub calls: u32,
    /// Calls the caller completed (answered, held, hung up).
    pub completed: u64,
    /// Calls the carrier completed.
    pub carrier_completed: u64,
}

/// `calls` calls split among the kinds (the first kinds take the remainder).
pub fn split(calls: u32) -> Vec<(SetupKind, u32)> {
    let n = SetupKind::ALL.len() as u32;
    SetupKind::ALL.iter().enumerate().map(|(i, k)| (*k, calls / n + u32::from((i as u32) < calls % n))).collect()
}

/// Starts every kind's carrier (listening before any call) and caller: `calls` calls in all.
pub fn start(topo: &Topology, calls: u32, t: &SetupTiming) -> Result<Vec<KindCalls>> {
    let (ns_a, ns_b) = (topo.ns(Host::A), topo.ns(Host::B));
    let mut started = Vec::new();
    for (kind, n) in split(calls).into_iter().filter(|(_, n)| *n > 0) {
        let rtp = if kind == SetupKind::EarlyMedia { t.early_rtp_port } else { t.quiet_rtp_port };
        let uas_file = match kind {
            SetupKind::Trying => "uas_answer_late.xml",
            SetupKind::Ringing => "uas_ring_then_answer.xml",
            SetupKind::EarlyMedia => "uas_early_media_rtp.xml",
            SetupKind::WaitingForPrack => "uas_answer_prack.xml",
        };
        // SIPp binds media ports of its own even when unused (audio and video, RTP and RTCP: four from -mp): ten
        // apart per instance, off the RTP ports.
        let media_port = 16000 + 10 * kind.index();
        let mut uas = Sipp::new(uas_file)
            .netns(&ns_b)
            .local_ip(CARRIER_B)
            .local_port(kind.carrier_port())
            .media_port(media_port)
            .key("rtp_port", &rtp.to_string())
            .calls(n)
            .pause(t.answer_after)
            .limit(t.limit)
            .trace_messages(true)
            // The reliable 183 is retransmitted until the late PRACK: more than SIPp's default 5 times.
            .arg("-max_retrans")
            .arg("20")
            .spawn()
            .with_context(|| format!("{} carrier", kind.label()))?;
        uas.wait_listening(Some(&ns_b), kind.carrier_port(), Duration::from_secs(5))?;
        let uac_file = if kind == SetupKind::WaitingForPrack { "uac_call_prack_late.xml" } else { "uac_call_rtp.xml" };
        let mut uac = Sipp::new(uac_file);
        if kind == SetupKind::WaitingForPrack {
            uac = uac.set("prack_delay_ms", &t.prack_after.as_millis().to_string());
        }
        let uac = uac
            .netns(&ns_a)
            .local_ip(CALLER)
            .local_port(kind.caller_port())
            .media_port(media_port)
            .target(addr(VIP_A, 5060))
            .service(&kind.number())
            .key("rtp_port", &rtp.to_string())
            .calls(n)
            .rate(t.rate)
            .pause(t.hold)
            .limit(t.limit)
            .trace_messages(true)
            .spawn()
            .with_context(|| format!("{} caller", kind.label()))?;
        started.push(KindCalls { kind, calls: n, uas, uac });
    }
    Ok(started)
}

/// The Call-IDs of the messages in a SIPp message log whose first line starts with `first_line`.
pub fn call_ids_of(log: &str, first_line: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut inside = false;
    for line in log.lines() {
        let line = line.trim_start();
        if line.starts_with(first_line) {
            inside = true;
        } else if inside && line.is_empty() {
            inside = false;
        } else if inside {
            if let Some(v) = line.strip_prefix("Call-ID:").or_else(|| line.strip_prefix("i:")) {
                ids.insert(v.trim().to_owned());
                inside = false;
            }
        }
    }
    ids
}

impl KindCalls {
    /// How many of this kind's calls are in their state now, by what the peers logged: the carrier got the INVITE
    /// (trying), the caller got the 180 (ringing) or the 183 (early media, waiting for PRACK).
    pub fn in_state(&self) -> usize {
        match self.kind {
            SetupKind::Trying => call_ids_of(&self.uas.messages(), "INVITE ").len(),
            SetupKind::Ringing => call_ids_of(&self.uac.messages(), "SIP/2.0 180").len(),
            SetupKind::EarlyMedia | SetupKind::WaitingForPrack => {
                call_ids_of(&self.uac.messages(), "SIP/2.0 183").len()
            }
        }
    }

    /// Waits for the callers and carriers to end and reads their statistics.
    pub fn finish(self) -> Result<KindOutcome> {
        let uac = self.uac.wait().with_context(|| format!("{} caller", self.kind.label()))?;
        let uas = self.uas.wait().with_context(|| format!("{} carrier", self.kind.label()))?;
        let ok = |r: &crate::sipp::Run| match r.count("SuccessfulCall(C)") {
            u64::MAX => 0,
            n => n,
        };
        if ok(&uac) < u64::from(self.calls) {
            eprintln!("{} caller: {} of {} completed\n{}", self.kind.label(), ok(&uac), self.calls, uac.diagnostics);
        }
        Ok(KindOutcome { kind: self.kind, calls: self.calls, completed: ok(&uac), carrier_completed: ok(&uas) })
    }
}

/// Waits until every call of every kind is in its state; fails after `timeout` saying how far each kind got.
pub fn wait_in_setup(kinds: &[KindCalls], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got: Vec<(SetupKind, usize, u32)> = kinds.iter().map(|k| (k.kind, k.in_state(), k.calls)).collect();
        if got.iter().all(|(_, n, want)| *n >= *want as usize) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let said: Vec<String> = got.iter().map(|(k, n, want)| format!("{} {n}/{want}", k.label())).collect();
            bail!("calls not in their setup states after {timeout:?}: {}", said.join(", "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since midnight of a CDR time (`2025-01-02T03:04:05.678Z`, RFC 3339 with milliseconds).
pub fn ms_of_day(rfc3339: &str) -> Option<u64> {
    let time = rfc3339.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    let secs: f64 = s.parse().ok()?;
    Some(h.parse::<u64>().ok()? * 3_600_000 + m.parse::<u64>().ok()? * 60_000 + (secs * 1000.0).round() as u64)
}

/// Seconds from CDR time field `from` to `to` (midnight in between is allowed for).
pub fn cdr_secs_between(cdr: &serde_json::Value, from: &str, to: &str) -> Option<f64> {
    let (a, b) = (ms_of_day(cdr[from].as_str()?)?, ms_of_day(cdr[to].as_str()?)?);
    Some(((b + 86_400_000 - a) % 86_400_000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_split_among_the_kinds_and_each_kind_has_its_own_number_and_ports() {
        let s = split(50);
        assert_eq!(s.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [13, 13, 12, 12]);
        let numbers: HashSet<String> = SetupKind::ALL.iter().map(|k| k.number()).collect();
        assert_eq!(numbers.len(), 4);
        assert!(config_tables().contains("prefix = \"+4933\"\nto = [{ trunk = \"carrier-early-media\""));
        assert_eq!(
            SetupKind::of_cdr(&serde_json::json!({ "called_in": "+4934123456" })),
            Some(SetupKind::WaitingForPrack)
        );
    }

    #[test]
    fn call_ids_are_read_from_the_messages_a_log_names() {
        let log = "UDP message received [10] bytes :\n\nSIP/2.0 183 Session Progress\nVia: x\nCall-ID: one@h\n\n\
                   UDP message received [10] bytes :\n\nSIP/2.0 183 Session Progress\nCall-ID: one@h\n\n\
                   SIP/2.0 180 Ringing\nCall-ID: two@h\n\nSIP/2.0 183 Session Progress\ni: three@h\n";
        assert_eq!(call_ids_of(log, "SIP/2.0 183").len(), 2, "one per call, retransmissions once");
        let cdr = serde_json::json!({ "setup": "2025-01-02T23:59:59.500Z", "answer": "2025-01-03T00:00:11.750Z" });
        assert_eq!(cdr_secs_between(&cdr, "setup", "answer"), Some(12.25));
    }
}
