//! The public edge's guard per source address (DESIGN.md "The public edge"; Kamailio's `pike` is the reference):
//! message rates, offences (malformed messages, failed authentications, scanner signatures) and the bans they
//! earn.
//!
//! It is consulted for every message right after the read ([`Edge::check`]: is the source banned, is it over its
//! rate), and told of offences found later ([`Edge::report`]). Decisions come out as values ([`Verdict`]) and
//! ban changes as events ([`Edge::poll_event`]) that the driver carries out: the XDP ban map, the log, metrics and
//! the standby of a pair. Nothing here reads a clock: `now` comes in with every call.
//!
//! Memory is bounded whatever arrives: at most [`EdgeConfig::max_sources`] sources are tracked (stale ones are
//! pruned every second) and as many bans held; an unknown source that finds the table full is dropped
//! ([`Verdict::TableFull`]), a trunk's is let through untracked.

use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many offences in how long earn a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Offences within `window` that earn the ban (the `count`-th one bans).
    pub count: u32,
    /// The window, counted from the first offence in it.
    pub window: Duration,
}

/// The guard's settings (`[edge]` in the configuration, where every default is explained).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Whether the guard works at all (off: every message passes, no offence counts; for measuring its cost).
    pub enabled: bool,
    /// Never banned, never rate-limited (monitoring, the pair's peer, a carrier's whole range); loopback always.
    pub allow: Vec<IpNet>,
    /// Messages per second from one trunk's source address beyond which it is banned; `None`: unlimited.
    pub rate_trusted: Option<u32>,
    /// Messages per second from one unknown source beyond which it is banned; `None`: unlimited.
    pub rate_unknown: Option<u32>,
    /// How long a ban lasts.
    pub ban_time: Duration,
    /// Failed authentications, per source and per username.
    pub auth_failures: Threshold,
    /// Messages that could not be parsed, per source.
    pub malformed: Threshold,
    /// Sources tracked at most (and bans held at most).
    pub max_sources: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
            rate_trusted: None,
            rate_unknown: Some(30),
            ban_time: Duration::from_secs(900),
            auth_failures: Threshold { count: 5, window: Duration::from_secs(60) },
            malformed: Threshold { count: 10, window: Duration::from_secs(60) },
            max_sources: 65_536,
        }
    }
}

/// User-Agents of the common SIP scanners and war-diallers.
pub const DEFAULT_SCANNERS: &[&str] =
    &["friendly-scanner", "sipvicious", "sipcli", "vaxsipuseragent", "sip-scan", "sipsak", "sundayddr", "iwar"];

/// Why a source was banned. The numbers are the reason codes of the XDP ban map (`relay_abi.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BanReason {
    /// Over its message rate.
    Rate = 1,
    /// Too many failed authentications (from it, or for a username it tried).
    AuthFailures = 2,
    /// Too many messages that could not be parsed.
    Malformed = 3,
    /// A scanner's User-Agent.
    Scanner = 4,
}

impl BanReason {
    /// Every reason, in code order.
    pub const ALL: [BanReason; 4] = [Self::Rate, Self::AuthFailures, Self::Malformed, Self::Scanner];

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::AuthFailures => "auth_failures",
            Self::Malformed => "malformed",
            Self::Scanner => "scanner",
        }
    }

    /// The code in the XDP ban map.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// From a label (replication records carry labels).
    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == s)
    }
}

/// Something a source did that counts towards a ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offence {
    /// A message that could not be parsed.
    Malformed,
    /// Credentials that were present and wrong (a missing one is only a challenge), for this username if any.
    AuthFailed {
        /// The username the credentials named.
        username: Option<String>,
    },
    /// A scanner's User-Agent.
    Scanner,
}

/// User-Agent substrings of scanners, compared case-insensitively ([`DEFAULT_SCANNERS`] by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanners(Vec<String>);

impl Scanners {
    /// These substrings (empty ones are ignored).
    pub fn new<S: AsRef<str>>(list: &[S]) -> Self {
        Self(list.iter().map(|s| s.as_ref().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
    }

    /// Whether a User-Agent value is a scanner's.
    pub fn matches(&self, user_agent: &[u8]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let ua = String::from_utf8_lossy(user_agent).to_ascii_lowercase();
        self.0.iter().any(|s| ua.contains(s.as_str()))
    }
}

impl Default for Scanners {
    fn default() -> Self {
        Self::new(DEFAULT_SCANNERS)
    }
}

/// What to do with one message, decided right after the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Pass,
    /// Drop: the source is banned.
    Banned(BanReason),
    /// Drop: this message put the source over its rate; it is banned from now on.
    OverRate,
    /// Drop: an unknown source while every slot of the source table is taken.
    TableFull,
}

/// A change of the ban list, for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanEvent {
    /// A source is banned for `duration`.
    Banned {
        /// The source.
        addr: IpAddr,
        /// Why.
        reason: BanReason,
        /// For how long from now.
        duration: Duration,
        /// Where the ban came from: here, or the active of a pair (then not replicated again).
        replicated: bool,
    },
    /// A ban ended (expired).
    Lifted {
        /// The source.
        addr: IpAddr,
    },
}

/// A ban in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// Why.
    pub reason: BanReason,
    /// When it ends.
    pub until: Instant,
}

/// Counts in a fixed window that starts with its first event.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    /// Adds one event at `now`; true when that makes `threshold.count` within the window.
    fn hit(this: &mut Option<Window>, now: Instant, threshold: Threshold) -> bool {
        let w = match this {
            Some(w) if now.saturating_duration_since(w.start) < threshold.window => w,
            _ => this.insert(Window { start: now, count: 0 }),
        };
        w.count = w.count.saturating_add(1);
        threshold.count > 0 && w.count >= threshold.count
    }
}

/// One source's counts.
#[derive(Debug, Clone)]
struct Source {
    /// Start of the current one-second rate window, and the messages in it and in the one before.
    second: Instant,
    this_second: u32,
    last_second: u32,
    auth: Option<Window>,
    malformed: Option<Window>,
    last_seen: Instant,
}

impl Source {
    fn new(now: Instant) -> Self {
        Self { second: now, this_second: 0, last_second: 0, auth: None, malformed: None, last_seen: now }
    }

    /// Counts a message; returns the rate estimate over the last second (a sliding window estimated from two fixed
    /// ones, as in Cloudflare's rate limiter: the previous second weighted by how much of it is still in view).
    fn count(&mut self, now: Instant) -> u32 {
        let since = now.saturating_duration_since(self.second);
        if since >= Duration::from_secs(2) {
            (self.last_second, self.this_second) = (0, 0);
            self.second = now;
        } else if since >= Duration::from_secs(1) {
            (self.last_second, self.this_second) = (self.this_second, 0);
            self.second += Duration::from_secs(1);
        }
        self.this_second = self.this_second.saturating_add(1);
        self.last_seen = now;
        let into = now.saturating_duration_since(self.second).as_secs_f64().min(1.0);
        self.this_second + (f64::from(self.last_second) * (1.0 - into)) as u32
    }
}

/// How long a source with no ban and no recent message is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// The per-source guard. See the [module docs](self).
#[derive(Debug)]
pub struct Edge {
    config: EdgeConfig,
    sources: HashMap<IpAddr, Source>,
    bans: HashMap<IpAddr, Ban>,
    usernames: HashMap<String, Option<Window>>,
    events: VecDeque<BanEvent>,
    next_prune: Option<Instant>,
}

impl Edge {
    /// A guard with `config`, banning nobody yet.
    pub fn new(config: EdgeConfig) -> Self {
        Self {
            config,
            sources: HashMap::new(),
            bans: HashMap::new(),
            usernames: HashMap::new(),
            events: VecDeque::new(),
            next_prune: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Whether `addr` is on the allowlist. Loopback always is: it is this host (monitoring, a local proxy).
    pub fn allowed(&self, addr: IpAddr) -> bool {
        addr.is_loopback() || self.config.allow.iter().any(|n| n.contains(&addr))
    }

    /// Decides on one message from `src` at `now`; `trusted`: the source is a trunk's (its rate is
    /// [`EdgeConfig::rate_trusted`]). The first thing after the read.
    pub fn check(&mut self, now: Instant, src: IpAddr, trusted: bool) -> Verdict {
        if !self.config.enabled {
            return Verdict::Pass;
        }
        if let Some(ban) = self.bans.get(&src) {
            if ban.until > now {
                return Verdict::Banned(ban.reason);
            }
        }
        if self.allowed(src) {
            return Verdict::Pass;
        }
        let limit = if trusted { self.config.rate_trusted } else { self.config.rate_unknown };
        let Some(limit) = limit else { return Verdict::Pass };
        let Some(source) = self.source(now, src) else {
            return if trusted { Verdict::Pass } else { Verdict::TableFull };
        };
        if source.count(now) > limit {
            self.ban(now, src, BanReason::Rate);
            return Verdict::OverRate;
        }
        Verdict::Pass
    }

    /// The ban in force on `src`, if any.
    pub fn banned(&self, now: Instant, src: IpAddr) -> Option<BanReason> {
        self.bans.get(&src).filter(|b| b.until > now).map(|b| b.reason)
    }

    /// An offence by `src`: counted, and banned when over its threshold (a scanner at once). Returns the ban
    /// reason when this offence banned it.
    pub fn report(&mut self, now: Instant, src: IpAddr, offence: &Offence) -> Option<BanReason> {
        if !self.config.enabled || self.allowed(src) || self.banned(now, src).is_some() {
            return None;
        }
        let reason = match offence {
            Offence::Scanner => Some(BanReason::Scanner),
            Offence::Malformed => {
                let threshold = self.config.malformed;
                let source = self.source(now, src)?;
                Window::hit(&mut source.malformed, now, threshold).then_some(BanReason::Malformed)
            }
            Offence::AuthFailed { username } => {
                let threshold = self.config.auth_failures;
                // A username tried from many addresses (a distributed guess) bans every address that fails on it
                // once the username's count is over the threshold.
                let by_name = match username {
                    Some(u)
                        if self.usernames.len() < self.config.max_sources
                            || self.usernames.contains_key(u.as_str()) =>
                    {
                        Window::hit(self.usernames.entry(u.clone()).or_default(), now, threshold)
                    }
                    _ => false,
                };
                let source = self.source(now, src)?;
                let by_source = Window::hit(&mut source.auth, now, threshold);
                (by_name || by_source).then_some(BanReason::AuthFailures)
            }
        };
        if let Some(r) = reason {
            self.ban(now, src, r);
        }
        reason
    }

    /// A ban made by the active of a pair, with what was left of it when it was sent.
    pub fn apply_replicated(&mut self, now: Instant, addr: IpAddr, reason: BanReason, remaining: Duration) {
        if self.bans.len() >= self.config.max_sources && !self.bans.contains_key(&addr) {
            return;
        }
        self.bans.insert(addr, Ban { reason, until: now + remaining });
        self.events.push_back(BanEvent::Banned { addr, reason, duration: remaining, replicated: true });
    }

    /// Every ban in force, with what is left of it: the snapshot for a standby.
    pub fn bans(&self, now: Instant) -> Vec<(IpAddr, BanReason, Duration)> {
        self.bans
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(a, b)| (*a, b.reason, b.until.saturating_duration_since(now)))
            .collect()
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Lifts expired bans and forgets quiet sources.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<IpAddr> = self.bans.iter().filter(|(_, b)| b.until <= now).map(|(a, _)| *a).collect();
        for addr in expired {
            self.bans.remove(&addr);
            self.events.push_back(BanEvent::Lifted { addr });
        }
        if self.next_prune.is_none_or(|t| t <= now) {
            self.sources.retain(|_, s| now.saturating_duration_since(s.last_seen) < FORGET_AFTER);
            let window = self.config.auth_failures.window;
            self.usernames.retain(|_, w| w.is_some_and(|w| now.saturating_duration_since(w.start) < window));
            self.next_prune = Some(now + Duration::from_secs(1));
        }
    }

    /// When [`Edge::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bans.values().map(|b| b.until).chain(self.next_prune).min()
    }

    /// The next ban change to carry out.
    pub fn poll_event(&mut self) -> Option<BanEvent> {
        self.events.pop_front()
    }

    fn source(&mut self, now: Instant, src: IpAddr) -> Option<&mut Source> {
        if !self.sources.contains_key(&src) {
            if self.sources.len() >= self.config.max_sources {
                self.sources.retain(|_, s| now.saturating_duration_since(s.last_seen) < Duration::from_secs(2));
                if self.sources.len() >= self.config.max_sources {
                    return None;
                }
            }
            self.sources.insert(src, Source::new(now));
        }
        self.sources.get_mut(&src)
    }

    fn ban(&mut self, now: Instant, addr: IpAddr, reason: BanReason) {
        if self.bans.len() >= self.config.max_sources && !self.bans.contains_key(&addr) {
            return;
        }
        let duration = self.config.ban_time;
        self.bans.insert(addr, Ban { reason, until: now + duration });
        // Its counts start afresh after the ban.
        self.sources.remove(&addr);
        self.events.push_back(BanEvent::Banned { addr, reason, duration, replicated: false });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn edge() -> Edge {
        Edge::new(EdgeConfig {
            enabled: true,
            allow: vec!["198.18.3.0/24".parse().unwrap()],
            rate_trusted: Some(1000),
            rate_unknown: Some(10),
            ban_time: Duration::from_secs(60),
            auth_failures: Threshold { count: 3, window: Duration::from_secs(60) },
            malformed: Threshold { count: 4, window: Duration::from_secs(10) },
            max_sources: 100,
        })
    }

    #[test]
    fn an_unknown_source_over_its_rate_is_banned_until_the_ban_runs_out() {
        let mut e = edge();
        let t0 = Instant::now();
        let x = ip("198.18.2.66");
        for i in 0..10 {
            assert_eq!(e.check(t0 + Duration::from_millis(i * 10), x, false), Verdict::Pass, "message {i}");
        }
        assert_eq!(e.check(t0 + Duration::from_millis(100), x, false), Verdict::OverRate);
        assert_eq!(
            e.poll_event(),
            Some(BanEvent::Banned {
                addr: x,
                reason: BanReason::Rate,
                duration: Duration::from_secs(60),
                replicated: false
            })
        );
        assert_eq!(e.check(t0 + Duration::from_secs(30), x, false), Verdict::Banned(BanReason::Rate));
        // A trunk at the same rate is fine.
        let pbx = ip("198.18.1.10");
        for i in 0..50 {
            assert_eq!(e.check(t0 + Duration::from_millis(i * 10), pbx, true), Verdict::Pass);
        }
        e.handle_timeout(t0 + Duration::from_secs(61));
        assert_eq!(e.poll_event(), Some(BanEvent::Lifted { addr: x }));
        assert_eq!(e.check(t0 + Duration::from_secs(61), x, false), Verdict::Pass);
    }

    #[test]
    fn a_steady_rate_under_the_limit_is_never_banned() {
        let mut e = edge();
        let t0 = Instant::now();
        let x = ip("198.18.2.67");
        // 9 per second for a minute, evenly spaced: the sliding estimate stays under 10.
        for i in 0..540u64 {
            assert_eq!(e.check(t0 + Duration::from_millis(i * 1000 / 9), x, false), Verdict::Pass, "message {i}");
        }
    }

    #[test]
    fn allowlisted_sources_are_never_banned_or_limited() {
        let mut e = edge();
        let t0 = Instant::now();
        let a = ip("198.18.3.2");
        for _ in 0..100 {
            assert_eq!(e.check(t0, a, false), Verdict::Pass);
        }
        assert_eq!(e.report(t0, a, &Offence::Scanner), None);
        assert_eq!(e.poll_event(), None);
    }

    #[test]
    fn offences_ban_at_their_thresholds() {
        let mut e = edge();
        let t0 = Instant::now();
        let scanner = ip("198.18.2.70");
        assert_eq!(e.report(t0, scanner, &Offence::Scanner), Some(BanReason::Scanner));
        let junk = ip("198.18.2.71");
        for _ in 0..3 {
            assert_eq!(e.report(t0, junk, &Offence::Malformed), None);
        }
        assert_eq!(e.report(t0, junk, &Offence::Malformed), Some(BanReason::Malformed));
        // Malformed messages spread wider than the window never add up.
        let slow = ip("198.18.2.72");
        for i in 0..20 {
            assert_eq!(e.report(t0 + Duration::from_secs(4 * i), slow, &Offence::Malformed), None);
        }
        let guesser = ip("198.18.2.73");
        let u = Some("1001".to_owned());
        assert_eq!(e.report(t0, guesser, &Offence::AuthFailed { username: u.clone() }), None);
        assert_eq!(e.report(t0, guesser, &Offence::AuthFailed { username: Some("1002".into()) }), None);
        assert_eq!(e.report(t0, guesser, &Offence::AuthFailed { username: u.clone() }), Some(BanReason::AuthFailures));
        assert_eq!(e.banned(t0, guesser), Some(BanReason::AuthFailures));
    }

    #[test]
    fn a_username_guessed_from_many_addresses_bans_them_once_over_its_threshold() {
        let mut e = edge();
        let t0 = Instant::now();
        let u = Some("carrier".to_owned());
        assert_eq!(e.report(t0, ip("198.18.2.80"), &Offence::AuthFailed { username: u.clone() }), None);
        assert_eq!(e.report(t0, ip("198.18.2.81"), &Offence::AuthFailed { username: u.clone() }), None);
        assert_eq!(
            e.report(t0, ip("198.18.2.82"), &Offence::AuthFailed { username: u.clone() }),
            Some(BanReason::AuthFailures)
        );
        assert_eq!(
            e.report(t0, ip("198.18.2.83"), &Offence::AuthFailed { username: u.clone() }),
            Some(BanReason::AuthFailures)
        );
        assert_eq!(e.banned(t0, ip("198.18.2.80")), None, "the first ones only tried once each");
    }

    #[test]
    fn the_source_table_is_bounded_and_full_means_unknown_sources_are_dropped() {
        let mut e = edge();
        let t0 = Instant::now();
        for i in 0..100u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 + i));
            assert_eq!(e.check(t0, a, false), Verdict::Pass);
        }
        assert_eq!(e.tracked(), 100);
        assert_eq!(e.check(t0, ip("198.19.0.1"), false), Verdict::TableFull);
        assert_eq!(e.check(t0, ip("198.19.0.2"), true), Verdict::Pass, "a trunk goes through untracked");
        // Two seconds on, the quiet ones make room.
        assert_eq!(e.check(t0 + Duration::from_secs(3), ip("198.19.0.1"), false), Verdict::Pass);
        e.handle_timeout(t0 + FORGET_AFTER + Duration::from_secs(5));
        assert_eq!(e.tracked(), 0);
    }

    #[test]
    fn replicated_bans_hold_for_what_was_left() {
        let mut e = edge();
        let t0 = Instant::now();
        let x = ip("2001:db8::66");
        e.apply_replicated(t0, x, BanReason::Scanner, Duration::from_secs(5));
        assert_eq!(e.check(t0 + Duration::from_secs(4), x, false), Verdict::Banned(BanReason::Scanner));
        assert_eq!(e.bans(t0 + Duration::from_secs(1)), vec![(x, BanReason::Scanner, Duration::from_secs(4))]);
        assert!(matches!(e.poll_event(), Some(BanEvent::Banned { replicated: true, .. })));
        e.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(e.poll_event(), Some(BanEvent::Lifted { addr: x }));
    }

    #[test]
    fn scanner_user_agents_match_case_insensitively() {
        let s = Scanners::default();
        assert!(s.matches(b"friendly-scanner"));
        assert!(s.matches(b"SIPVicious 0.3.4"));
        assert!(s.matches(b"VaxSIPUserAgent/3.1"));
        assert!(!s.matches(b"Asterisk PBX 20.5"));
        assert!(!Scanners::new::<&str>(&[]).matches(b"friendly-scanner"));
        assert_eq!(BanReason::from_label("scanner"), Some(BanReason::Scanner));
    }
}
