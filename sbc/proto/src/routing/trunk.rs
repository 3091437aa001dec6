//! Trunks as typed objects (DESIGN.md principle 4): where calls come from, where they go, and the policy of each.
//! The `sbc` crate builds these from `[[trunk]]` and `[[route]]` in the configuration and validates them there.

use super::{Candidate, FailoverTriggers, PrefixTable, ProbeConfig, TrunkId};
use crate::policy::digest::Secret;
use crate::policy::{IdentityIn, IdentityOut, NumberRules};
use crate::transport::{TlsIdentity, Transport};
use ipnet::IpNet;
use relay_proto::sdes::SrtpMode;
use std::net::SocketAddr;
use std::time::Duration;

/// One trunk: a customer PBX or a carrier. A trunk may both send and receive calls.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Its name in the configuration, for logs, metrics and CDRs.
    pub name: String,
    /// Source addresses recognised as this trunk for inbound calls. Empty: the trunk only receives calls (unless
    /// it is recognised by `tls_identities` or credentials).
    pub sources: Vec<SourceMatch>,
    /// Names (lower-case) of the verified TLS client certificates recognised as this trunk, from any address:
    /// a message on a TLS connection whose certificate has one of these as its subject CN or a DNS SAN belongs to
    /// this trunk (`match.tls`). Checked before `sources`. Default empty.
    pub tls_identities: Vec<String>,
    /// The host of the Request-URI and To of calls to this trunk (its certificate name, `tls.server_name`).
    /// Default `None`: the gateway's address.
    pub uri_host: Option<String>,
    /// Whether calls to this trunk use `sips:` URIs (RFC 5630; Request-URI, To and our Contact) over TLS, rather
    /// than `sip:` URIs with `;transport=tls`. Default false.
    pub sips: bool,
    /// Where calls to this trunk go: the first, then the next when one fails at transport level (connection or TLS
    /// handshake refused, no address of ours to send from), before the route's next carrier. Empty: the trunk only
    /// sends calls.
    pub gateways: Vec<Gateway>,
    /// Gateways named by DNS (RFC 3263), each tried in its place among `gateways` ([`DnsGateway::position`]) with
    /// the targets the server last resolved for it. Default empty.
    pub dns_gateways: Vec<super::DnsGateway>,
    /// What sends a call on to the next carrier when this trunk fails it.
    pub failover: FailoverTriggers,
    /// Concurrent-call and call-rate limits, in both directions together.
    pub limits: Limits,
    /// OPTIONS probing of the gateways; `None`: not probed, always considered up.
    pub probe: Option<ProbeConfig>,
    /// Credentials to answer this trunk's 401/407 challenges with.
    pub auth: Option<Credentials>,
    /// Credentials this trunk must present on its INVITEs (digest, RFC 3261 §22.3, challenged with 407). A trunk
    /// with these and no `sources` is recognised by them alone, from any address.
    pub inbound_auth: Option<Credentials>,
    /// Headers of the other leg copied onto requests towards this trunk, beyond what the B2BUA builds itself
    /// (lower-case names). Default empty: nothing of one side's topology leaks to the other.
    pub pass_headers: Vec<String>,
    /// Whether 3xx from this trunk is followed (failover to the next carrier) rather than returned to the caller.
    /// Default false: returned.
    pub follow_redirects: bool,
    /// Whether this trunk is disabled (no calls to it, calls from it refused with 403).
    pub disabled: bool,
    /// Number rules for calls *from* this trunk, applied to the called number (before routing) and to the calling
    /// numbers (From user, P-Asserted-Identity) as presented. Default: no change.
    pub numbers_in: NumberRules,
    /// Number rules for calls *to* this trunk, applied to the called number (Request-URI and To) and to the calling
    /// numbers sent to it (after [`identity::outbound`](crate::policy::identity::outbound)). Default: no change.
    pub numbers_out: NumberRules,
    /// Identity policy for calls from this trunk: whether its P-Asserted-Identity is believed, its verified number.
    /// Default: untrusted, no verified number (an incoming PAI is ignored).
    pub identity_in: IdentityIn,
    /// Identity policy for calls to this trunk: whether it receives P-Asserted-Identity, what its From user is.
    /// Default: untrusted (no PAI sent), From user as presented.
    pub identity_out: IdentityOut,
    /// SDES-SRTP on this trunk's leg (`off`, `optional`, `required`), terminated by the relay with keys of its own
    /// for the leg (relay-proto's `negotiate`). Default: off (plain RTP; an `RTP/SAVP` offer is refused with 488).
    pub srtp: SrtpMode,
    /// Registration of the SBC with this carrier (a registration-based trunk): while not registered the trunk is
    /// down, and INVITEs from the carrier to the registered contact belong to this trunk. Default `None`.
    pub register: Option<Registration>,
    /// A synthetic call placed to this trunk on a timer, to check that it answers and carries media. Default
    /// `None`.
    pub canary: Option<super::CanaryConfig>,
}

/// How the SBC registers with a carrier (RFC 3261 §10): the binding of `sip:{username}@{domain}` to our contact
/// `sip:{contact_user}@{our address}`.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The account: the user of the address-of-record, and the digest credentials for the registrar's challenges.
    pub credentials: Credentials,
    /// Where REGISTERs go.
    pub registrar: Gateway,
    /// The host of the address-of-record and of the REGISTER's Request-URI.
    pub domain: String,
    /// The expiry asked for; the registrar's answer decides.
    pub expires: Duration,
    /// The user part of our Contact: the carrier sends its calls to it.
    pub contact_user: String,
}

impl Trunk {
    /// A trunk called `name` with every setting at its default: no sources, no gateways, default failover codes,
    /// no limits, no probes, no credentials, nothing passed through, no number rules, untrusted.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sources: Vec::new(),
            tls_identities: Vec::new(),
            uri_host: None,
            sips: false,
            gateways: Vec::new(),
            dns_gateways: Vec::new(),
            failover: FailoverTriggers::default(),
            limits: Limits::default(),
            probe: None,
            auth: None,
            inbound_auth: None,
            pass_headers: Vec::new(),
            follow_redirects: false,
            disabled: false,
            numbers_in: NumberRules::default(),
            numbers_out: NumberRules::default(),
            identity_in: IdentityIn::default(),
            identity_out: IdentityOut::default(),
            srtp: SrtpMode::Off,
            register: None,
            canary: None,
        }
    }
}

impl Trunk {
    /// What a reload leaves in the slot of a trunk the new configuration no longer has: its name (for the metric
    /// labels and CDRs of the calls still up on it, which keep the full trunk in their own plan), disabled, with no
    /// source, credential, gateway, probe or registration, so no new call comes from it or goes to it. Keeping the
    /// slot keeps every other trunk's id, which calls, probes, counters and metric labels index by.
    pub fn tombstone(name: impl Into<String>) -> Self {
        Self { disabled: true, ..Self::new(name) }
    }
}

/// A source address or network, optionally with a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMatch {
    /// The network (`198.18.1.10/32`).
    pub net: IpNet,
    /// The source port, if the match is that narrow.
    pub port: Option<u16>,
}

impl SourceMatch {
    /// Whether `addr` matches.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        self.net.contains(&addr.ip()) && self.port.is_none_or(|p| p == addr.port())
    }
}

/// A gateway of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gateway {
    /// The transport to use.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
}

/// Per-trunk limits. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent calls.
    pub calls: Option<u32>,
    /// New calls per second.
    pub cps: Option<u32>,
}

/// Digest credentials for a carrier that challenges.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password, never logged.
    pub password: Secret,
}

/// What to do with an INVITE from a source that is no trunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownSource {
    /// Answer 403 Forbidden (default: the peer learns it is not configured, which helps bring-up).
    #[default]
    Reject,
    /// Say nothing: scanners learn nothing.
    Drop,
}

/// Everything the call path needs to steer calls: trunks, routes and the call-level limits.
#[derive(Debug)]
pub struct Plan {
    /// The trunks; [`TrunkId`] is the index here.
    pub trunks: Vec<Trunk>,
    /// Routes by prefix of the called number: the candidates of each, in configuration order.
    pub routes: PrefixTable<Vec<Candidate>>,
    /// The route of numbers no prefix matches (`prefix = ""` in the configuration), if any.
    pub catch_all: Option<Vec<Candidate>>,
    /// What to do with calls from unknown sources.
    pub unknown_source: UnknownSource,
    /// Most carriers tried per call. Default 3.
    pub max_tries: u32,
    /// Longest time from the INVITE to an answer or the last failure before the call is given up. Default 30 s.
    pub max_post_dial: Duration,
    /// Longest an answered call may last; then the SBC ends it with BYE to both sides. Default `None`: no limit.
    pub max_duration: Option<Duration>,
    /// Interval of in-dialog OPTIONS to both sides of an answered call; a peer that answers 408 or 481, or not
    /// at all, is gone and the call is ended with BYE to both sides. Default `None`: off (a negotiated session
    /// timer, RFC 4028, still ends calls whose refreshes stop).
    pub keepalive: Option<Duration>,
}

impl Default for Plan {
    /// No trunks and no routes: every INVITE comes from an unknown source.
    fn default() -> Self {
        Self {
            trunks: Vec::new(),
            routes: PrefixTable::default(),
            catch_all: None,
            unknown_source: UnknownSource::Reject,
            max_tries: 3,
            max_post_dial: Duration::from_secs(30),
            max_duration: None,
            keepalive: None,
        }
    }
}

impl Plan {
    /// The trunk `remote` belongs to: the one whose matching source is the most specific (longest prefix, then
    /// with a port), so that a /32 entry wins over a /24 of another trunk.
    pub fn identify(&self, remote: SocketAddr) -> Option<TrunkId> {
        let mut best: Option<(TrunkId, (u8, bool))> = None;
        for (i, t) in self.trunks.iter().enumerate() {
            for s in t.sources.iter().filter(|s| s.matches(remote)) {
                let rank = (s.net.prefix_len(), s.port.is_some());
                if best.is_none_or(|(_, r)| rank > r) {
                    best = Some((TrunkId(i as u32), rank));
                }
            }
        }
        best.map(|(id, _)| id)
    }

    /// The trunk of a message from `remote` that came with the verified TLS `identity` (if any): the first trunk
    /// whose `tls_identities` holds one of the identity's names, else the trunk of the source address
    /// ([`Plan::identify`]). A certificate is a stronger proof than an address, so it ranks first.
    pub fn identify_peer(&self, remote: SocketAddr, identity: Option<&TlsIdentity>) -> Option<TrunkId> {
        identity
            .and_then(|id| {
                self.trunks.iter().position(|t| t.tls_identities.iter().any(|n| id.has(n))).map(|i| TrunkId(i as u32))
            })
            .or_else(|| self.identify(remote))
    }

    /// The registering trunk a request from `remote` to Request-URI user `user` is for: the trunk whose
    /// `contact_user` is `user` and whose registrar or a gateway has `remote`'s address (any port). A registration
    /// names the trunk more precisely than an address, so it is asked before [`Plan::identify_peer`].
    pub fn identify_registered(&self, remote: SocketAddr, user: &str) -> Option<TrunkId> {
        self.trunks
            .iter()
            .position(|t| {
                t.register.as_ref().is_some_and(|r| {
                    r.contact_user == user
                        && (r.registrar.addr.ip() == remote.ip()
                            || t.gateways.iter().any(|g| g.addr.ip() == remote.ip()))
                })
            })
            .map(|i| TrunkId(i as u32))
    }

    /// [`Plan::is_known`], or a peer whose TLS identity names a trunk.
    pub fn is_known_peer(&self, remote: SocketAddr, identity: Option<&TlsIdentity>) -> bool {
        self.identify_peer(remote, identity).is_some() || self.is_known(remote)
    }

    /// Whether `remote` is a peer of ours: a trunk's source (by [`Plan::identify`]), or the address of a carrier
    /// gateway, any port (a carrier's requests may come from another port than the one we send to). Every other
    /// source is unknown: `calls.unknown_source` and the edge's `rate_unknown` apply to it.
    pub fn is_known(&self, remote: SocketAddr) -> bool {
        self.identify(remote).is_some()
            || self.trunks.iter().any(|t| {
                t.gateways.iter().any(|g| g.addr.ip() == remote.ip())
                    || t.register.as_ref().is_some_and(|r| r.registrar.addr.ip() == remote.ip())
            })
    }

    /// The trunk whose inbound credentials carry `username` and that has no source addresses (recognised by its
    /// credentials alone).
    pub fn by_username(&self, username: &str) -> Option<TrunkId> {
        self.trunks
            .iter()
            .position(|t| {
                t.sources.is_empty()
                    && t.tls_identities.is_empty()
                    && t.inbound_auth.as_ref().is_some_and(|c| c.username == username)
            })
            .map(|i| TrunkId(i as u32))
    }

    /// Whether some trunk is recognised by credentials alone: then INVITEs from unknown sources are challenged.
    pub fn has_credential_trunks(&self) -> bool {
        self.trunks.iter().any(|t| t.sources.is_empty() && t.tls_identities.is_empty() && t.inbound_auth.is_some())
    }

    /// The candidates for a normalised called number: the longest matching prefix's, else the catch-all route's.
    /// Returns the matched prefix too (empty for the catch-all), for logs and CDRs.
    pub fn route<'a>(&'a self, number: &'a str) -> Option<(&'a str, &'a [Candidate])> {
        match self.routes.longest_match(number) {
            Some(m) => Some((&number[..m.prefix_len], m.value)),
            None => self.catch_all.as_deref().map(|c| ("", c)),
        }
    }

    /// The trunk with this id.
    pub fn trunk(&self, id: TrunkId) -> &Trunk {
        &self.trunks[id.0 as usize]
    }

    /// The id of the trunk called `name`.
    pub fn by_name(&self, name: &str) -> Option<TrunkId> {
        self.trunks.iter().position(|t| t.name == name).map(|i| TrunkId(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::PrefixTableBuilder;

    fn trunk(name: &str, sources: &[&str]) -> Trunk {
        let sources = sources
            .iter()
            .map(|s| match s.split_once(' ') {
                Some((net, port)) => SourceMatch { net: net.parse().unwrap(), port: Some(port.parse().unwrap()) },
                None => SourceMatch { net: s.parse().unwrap(), port: None },
            })
            .collect();
        Trunk { sources, ..Trunk::new(name) }
    }

    #[test]
    fn most_specific_source_identifies_the_trunk() {
        let plan = Plan {
            trunks: vec![
                trunk("wide", &["198.18.1.0/24"]),
                trunk("pbx", &["198.18.1.10/32"]),
                trunk("pbx-port", &["198.18.1.10/32 5070"]),
            ],
            routes: PrefixTableBuilder::new().build().unwrap(),
            catch_all: None,
            unknown_source: UnknownSource::Reject,
            max_tries: 3,
            max_post_dial: Duration::from_secs(30),
            max_duration: None,
            keepalive: None,
        };
        assert_eq!(plan.identify("198.18.1.10:5060".parse().unwrap()), Some(TrunkId(1)));
        assert_eq!(plan.identify("198.18.1.10:5070".parse().unwrap()), Some(TrunkId(2)));
        assert_eq!(plan.identify("198.18.1.11:5060".parse().unwrap()), Some(TrunkId(0)));
        assert_eq!(plan.identify("198.18.2.10:5060".parse().unwrap()), None);
        assert_eq!(plan.by_name("pbx"), Some(TrunkId(1)));
    }

    #[test]
    fn a_tls_identity_names_its_trunk_from_any_address_and_ranks_before_the_source() {
        let mut by_cert = trunk("by-cert", &[]);
        by_cert.tls_identities = vec!["pbx.customer.example.net".into()];
        let plan = Plan { trunks: vec![trunk("wide", &["198.18.1.0/24"]), by_cert], ..Plan::default() };
        let id = TlsIdentity::new(["PBX.Customer.example.net".to_owned(), "other.example.net".to_owned()]);
        let stranger = TlsIdentity::new(["someone.example.org".to_owned()]);
        let (inside, outside) = ("198.18.1.10:5061".parse().unwrap(), "203.0.113.9:40000".parse().unwrap());
        assert_eq!(plan.identify_peer(inside, Some(&id)), Some(TrunkId(1)));
        assert_eq!(plan.identify_peer(outside, Some(&id)), Some(TrunkId(1)));
        assert_eq!(plan.identify_peer(inside, Some(&stranger)), Some(TrunkId(0)), "falls back to the source");
        assert_eq!(plan.identify_peer(outside, Some(&stranger)), None);
        assert_eq!(plan.identify_peer(outside, None), None);
        assert!(plan.is_known_peer(outside, Some(&id)) && !plan.is_known_peer(outside, None));
    }

    #[test]
    fn a_call_to_the_registered_contact_from_the_carrier_belongs_to_the_registering_trunk() {
        let carrier = Gateway { transport: Transport::Udp, addr: "198.18.2.10:5060".parse().unwrap() };
        let mut reg = trunk("reg", &[]);
        reg.gateways = vec![carrier];
        reg.register = Some(crate::routing::Registration {
            credentials: Credentials { username: "acct".into(), password: Secret::new("x") },
            registrar: carrier,
            domain: "carrier.example".into(),
            expires: Duration::from_secs(600),
            contact_user: "sbc-acct".into(),
        });
        let plan = Plan { trunks: vec![trunk("wide", &["198.18.2.0/24"]), reg], ..Plan::default() };
        let other_port = "198.18.2.10:5070".parse().unwrap();
        assert_eq!(plan.identify_registered(other_port, "sbc-acct"), Some(TrunkId(1)));
        assert_eq!(plan.identify_registered(other_port, "someone"), None, "another user is not our contact");
        assert_eq!(plan.identify_registered("198.18.2.11:5060".parse().unwrap(), "sbc-acct"), None, "another host");
    }
}
