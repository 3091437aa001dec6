//! ICE-lite on one WebRTC leg (RFC 8445 §2.5, §7.3): the relay has one host candidate per leg (its port on the
//! client-facing interface), never sends checks of its own, and answers the browser's binding requests.
//!
//! A request is answered only when its USERNAME is `OUR_UFRAG:THEIR_UFRAG` (RFC 8445 §7.2.2), its
//! MESSAGE-INTEGRITY verifies with our password (short-term credential, RFC 8489 §9.1) and its FINGERPRINT, when
//! present, is right. The answer carries XOR-MAPPED-ADDRESS (the source the request came from),
//! MESSAGE-INTEGRITY with our password and FINGERPRINT. Anything else gets no answer and a [`StunRefusal`] the
//! caller counts: answering unauthenticated requests would make the relay a reflector.
//!
//! The first authenticated request latches the browser's address; a later authenticated request carrying
//! USE-CANDIDATE from another address moves the latch (the browser, as controlling agent, nominated that pair,
//! RFC 8445 §7.3.1.5). Candidates in the browser's SDP are never looked at: mDNS (`.local`) names are not
//! resolved, the address comes from authenticated packets only.
//!
//! Consent freshness (RFC 7675 §5.1): the browser repeats its checks every 5 s or so; when no authenticated
//! request came from the latched address for [`CONSENT_TIMEOUT`], the leg is dead ([`IceEvent::ConsentExpired`]),
//! which the signalling side turns into a BYE.

use crate::sdes::{KeySource, KeySourceError};
use rtc_stun::attributes::{ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_USERNAME, ATTR_USE_CANDIDATE};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a leg lives without an authenticated binding request from its latched browser (RFC 7675 §5.1: 30 s),
/// counted from the leg's start until the first one.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Characters of `ice-char` (RFC 8839 §5.4) that need no escaping anywhere: letters and digits.
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Our ufrag and password lengths: RFC 8839 §5.4 asks for at least 4 and 22 characters; 8 and 24 as browsers do.
const UFRAG_LEN: usize = 8;
const PWD_LEN: usize = 24;

/// One side's ICE credentials (`a=ice-ufrag`, `a=ice-pwd`). The password is not printed by `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceCredentials {
    /// The username fragment.
    pub ufrag: String,
    /// The password: the key of MESSAGE-INTEGRITY.
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials").field("ufrag", &self.ufrag).finish_non_exhaustive()
    }
}

impl IceCredentials {
    /// Fresh credentials for a leg from `source` (the OS CSPRNG outside tests): the password keys the checks, so
    /// it must not be guessable.
    pub fn generate(source: &mut dyn KeySource) -> Result<Self, KeySourceError> {
        let mut text = |len: usize| -> Result<String, KeySourceError> {
            let mut bytes = vec![0u8; len];
            source.fill(&mut bytes)?;
            // 62 symbols from a byte: a slight bias (256 % 62) costs under 0.1 bit of the 142 bits of a password.
            Ok(bytes.iter().map(|b| ICE_CHARS[usize::from(*b) % ICE_CHARS.len()] as char).collect())
        };
        Ok(Self { ufrag: text(UFRAG_LEN)?, pwd: text(PWD_LEN)? })
    }
}

/// Why a STUN datagram got no answer. Counted by [`StunRefusal::label`], never answered (RFC 8445 §7.3: a lite
/// agent answers authenticated binding requests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StunRefusal {
    /// Not a STUN message (bad header, magic cookie, length).
    Malformed,
    /// A STUN message other than a binding request (a response, an indication, another method).
    NotBindingRequest,
    /// No USERNAME, or one that is not `OUR_UFRAG:THEIR_UFRAG`.
    UnknownUsername,
    /// No MESSAGE-INTEGRITY, or one that does not verify with our password.
    BadIntegrity,
    /// A FINGERPRINT that does not match the message.
    BadFingerprint,
}

impl StunRefusal {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "stun_malformed",
            Self::NotBindingRequest => "stun_not_binding_request",
            Self::UnknownUsername => "stun_unknown_username",
            Self::BadIntegrity => "stun_bad_integrity",
            Self::BadFingerprint => "stun_bad_fingerprint",
        }
    }
}

/// The answer to an authenticated binding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunReply {
    /// Where the answer goes: the request's source (also when it is not the latched address).
    pub to: SocketAddr,
    /// The binding success response.
    pub datagram: Vec<u8>,
    /// The browser's address, when this request latched it or moved the latch.
    pub latched: Option<SocketAddr>,
}

/// What the leg's timer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// No consent for [`CONSENT_TIMEOUT`]: the browser vanished (tab closed, network gone). Reported once.
    ConsentExpired,
}

/// The ICE-lite agent of one WebRTC leg.
///
/// Call order: [`IceLite::new`] when the leg's SDP is known; [`IceLite::handle_stun`] for every datagram
/// [`super::demux::demux`] calls STUN; [`IceLite::poll_timeout`] / [`IceLite::handle_timeout`] for consent.
#[derive(Debug)]
pub struct IceLite {
    local: IceCredentials,
    remote_ufrag: String,
    /// `OUR_UFRAG:THEIR_UFRAG`, what an authentic request's USERNAME holds.
    expected_username: String,
    peer: Option<SocketAddr>,
    consent_until: Instant,
    expired: bool,
}

impl IceLite {
    /// The agent of a leg whose browser sent `remote_ufrag` in its SDP, with our `local` credentials (the ones in
    /// our SDP towards it), from `now`.
    pub fn new(now: Instant, local: IceCredentials, remote_ufrag: &str) -> Self {
        Self {
            expected_username: format!("{}:{}", local.ufrag, remote_ufrag),
            local,
            remote_ufrag: remote_ufrag.to_owned(),
            peer: None,
            consent_until: now + CONSENT_TIMEOUT,
            expired: false,
        }
    }

    /// The agent of a leg that another relay latched on `peer` (a takeover): checks from `peer` keep consent,
    /// counted from `now`, as if this agent had latched it.
    pub fn resume(now: Instant, local: IceCredentials, remote_ufrag: &str, peer: SocketAddr) -> Self {
        Self { peer: Some(peer), ..Self::new(now, local, remote_ufrag) }
    }

    /// Our credentials (for SDP).
    pub fn local(&self) -> &IceCredentials {
        &self.local
    }

    /// The browser's ufrag.
    pub fn remote_ufrag(&self) -> &str {
        &self.remote_ufrag
    }

    /// The latched browser address, once an authenticated request came.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A datagram that [`super::demux::demux`] called STUN, from `from`: the answer to send, or why none.
    pub fn handle_stun(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Result<StunReply, StunRefusal> {
        let mut request = Message::new();
        request.unmarshal_binary(datagram).map_err(|_| StunRefusal::Malformed)?;
        if request.typ != BINDING_REQUEST {
            return Err(StunRefusal::NotBindingRequest);
        }
        let username = TextAttribute::get_from_as(&request, ATTR_USERNAME).map_err(|_| StunRefusal::UnknownUsername)?;
        if username.text != self.expected_username {
            return Err(StunRefusal::UnknownUsername);
        }
        if !request.contains(ATTR_MESSAGE_INTEGRITY) {
            return Err(StunRefusal::BadIntegrity);
        }
        // FINGERPRINT, when present, is the last attribute and comes after MESSAGE-INTEGRITY (RFC 8489 §14.7):
        // checked first, since rtc-stun's integrity check expects it there.
        if request.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&request).is_err() {
            return Err(StunRefusal::BadFingerprint);
        }
        let crypto = crate::srtp::provider().crypto();
        MessageIntegrity::check(&mut request, self.local.pwd.as_bytes(), crypto)
            .map_err(|_| StunRefusal::BadIntegrity)?;

        let latched = match self.peer {
            None => Some(from),
            Some(peer) if peer != from && request.contains(ATTR_USE_CANDIDATE) => Some(from),
            Some(_) => None,
        };
        if let Some(peer) = latched {
            self.peer = Some(peer);
        }
        if self.peer == Some(from) {
            self.consent_until = now + CONSENT_TIMEOUT;
        }

        let mut reply = Message::new();
        let setters: [Box<dyn Setter + '_>; 5] = [
            Box::new(BINDING_SUCCESS),
            Box::new(request.transaction_id),
            Box::new(XorMappedAddress { ip: from.ip(), port: from.port() }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(self.local.pwd.clone(), crypto)),
            Box::new(FINGERPRINT),
        ];
        // Building fails only when the provider cannot compute an HMAC: nothing to answer with then.
        reply.build(&setters).map_err(|_| StunRefusal::BadIntegrity)?;
        Ok(StunReply { to: from, datagram: reply.raw, latched })
    }

    /// When [`IceLite::handle_timeout`] is next due: the end of consent (none once expired).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.expired).then_some(self.consent_until)
    }

    /// Advances the leg to `now`: [`IceEvent::ConsentExpired`] once, when consent lapsed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<IceEvent> {
        if self.expired || now < self.consent_until {
            return None;
        }
        self.expired = true;
        Some(IceEvent::ConsentExpired)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sdes::tests::CountingKeys;
    use rtc_stun::attributes::RawAttribute;
    use rtc_stun::attributes::ATTR_ICE_CONTROLLING;
    use rtc_stun::message::{MessageType, TransactionId, CLASS_INDICATION, METHOD_BINDING};

    fn browser() -> SocketAddr {
        "198.18.1.10:50000".parse().unwrap()
    }

    fn agent(now: Instant) -> IceLite {
        let local = IceCredentials { ufrag: "relayUfr".into(), pwd: "relayPasswordOf24Chars00".into() };
        IceLite::new(now, local, "brws")
    }

    /// A binding request as Chromium sends it: USERNAME, ICE-CONTROLLING, PRIORITY-like attributes,
    /// MESSAGE-INTEGRITY with `pwd`, FINGERPRINT.
    pub(crate) fn request(username: &str, pwd: &str, use_candidate: bool) -> (Vec<u8>, TransactionId) {
        let crypto = crate::srtp::provider().crypto();
        let id = TransactionId([7; 12]);
        let mut m = Message::new();
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(id),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.into())),
            Box::new(RawAttribute { typ: ATTR_ICE_CONTROLLING, length: 8, value: vec![1; 8] }),
        ];
        if use_candidate {
            setters.push(Box::new(RawAttribute { typ: ATTR_USE_CANDIDATE, length: 0, value: vec![] }));
        }
        setters.push(Box::new(MessageIntegrity::new_short_term_integrity_with_provider(pwd.into(), crypto)));
        setters.push(Box::new(FINGERPRINT));
        m.build(&setters).unwrap();
        (m.raw, id)
    }

    #[test]
    fn authenticated_binding_request_gets_a_verified_success_with_the_source_address_and_latches() {
        let now = Instant::now();
        let mut ice = agent(now);
        let (req, id) = request("relayUfr:brws", "relayPasswordOf24Chars00", false);
        let reply = ice.handle_stun(now, browser(), &req).unwrap();
        assert_eq!(reply.to, browser());
        assert_eq!(reply.latched, Some(browser()));
        assert_eq!(ice.peer(), Some(browser()));

        // The browser's view: parse and verify the answer with rtc-stun.
        let crypto = crate::srtp::provider().crypto();
        let mut answer = Message::new();
        answer.unmarshal_binary(&reply.datagram).unwrap();
        assert_eq!(answer.typ, BINDING_SUCCESS);
        assert_eq!(answer.transaction_id, id);
        FINGERPRINT.check(&answer).expect("FINGERPRINT verifies");
        MessageIntegrity::check(&mut answer, b"relayPasswordOf24Chars00", crypto).expect("integrity with our pwd");
        let mut mapped = XorMappedAddress { ip: "0.0.0.0".parse().unwrap(), port: 0 };
        mapped.get_from_as(&answer, rtc_stun::attributes::ATTR_XORMAPPED_ADDRESS).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), browser());

        // A second check from the same address: answered, latch unchanged.
        let again = ice.handle_stun(now, browser(), &req).unwrap();
        assert_eq!(again.latched, None);
    }

    #[test]
    fn wrong_password_username_or_message_type_is_not_answered() {
        let now = Instant::now();
        let mut ice = agent(now);
        let (bad_pwd, _) = request("relayUfr:brws", "someoneElsesPassword0000", false);
        assert_eq!(ice.handle_stun(now, browser(), &bad_pwd), Err(StunRefusal::BadIntegrity));
        let (bad_user, _) = request("otherUfr:brws", "relayPasswordOf24Chars00", false);
        assert_eq!(ice.handle_stun(now, browser(), &bad_user), Err(StunRefusal::UnknownUsername));
        let (mut corrupted, _) = request("relayUfr:brws", "relayPasswordOf24Chars00", false);
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        assert_eq!(ice.handle_stun(now, browser(), &corrupted), Err(StunRefusal::BadFingerprint));
        let mut indication = Message::new();
        indication
            .build(&[
                Box::new(MessageType::new(METHOD_BINDING, CLASS_INDICATION)) as Box<dyn Setter>,
                Box::new(TransactionId([1; 12])),
            ])
            .unwrap();
        assert_eq!(ice.handle_stun(now, browser(), &indication.raw), Err(StunRefusal::NotBindingRequest));
        for len in 0..24 {
            assert!(ice.handle_stun(now, browser(), &bad_pwd[..len]).is_err(), "{len} bytes");
        }
        assert_eq!(ice.peer(), None, "nothing unauthenticated latches");
    }

    #[test]
    fn nomination_from_another_address_moves_the_latch_and_a_plain_check_does_not() {
        let now = Instant::now();
        let mut ice = agent(now);
        let (check, _) = request("relayUfr:brws", "relayPasswordOf24Chars00", false);
        let (nominate, _) = request("relayUfr:brws", "relayPasswordOf24Chars00", true);
        ice.handle_stun(now, browser(), &check).unwrap();
        let other: SocketAddr = "198.18.1.11:50002".parse().unwrap();
        let r = ice.handle_stun(now, other, &check).unwrap();
        assert_eq!((r.to, r.latched, ice.peer()), (other, None, Some(browser())), "answered, not latched");
        let r = ice.handle_stun(now, other, &nominate).unwrap();
        assert_eq!((r.latched, ice.peer()), (Some(other), Some(other)));
    }

    #[test]
    fn consent_lapses_30_s_after_the_last_authenticated_check_from_the_latched_address() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        assert_eq!(ice.poll_timeout(), Some(t0 + CONSENT_TIMEOUT), "a browser that never checks dies too");
        let (check, _) = request("relayUfr:brws", "relayPasswordOf24Chars00", false);
        let (bad, _) = request("relayUfr:brws", "someoneElsesPassword0000", false);
        let t5 = t0 + Duration::from_secs(5);
        ice.handle_stun(t5, browser(), &check).unwrap();
        let _ = ice.handle_stun(t0 + Duration::from_secs(20), browser(), &bad);
        assert_eq!(ice.poll_timeout(), Some(t5 + CONSENT_TIMEOUT), "refused checks give no consent");
        assert_eq!(ice.handle_timeout(t5 + Duration::from_secs(29)), None);
        assert_eq!(ice.handle_timeout(t5 + CONSENT_TIMEOUT), Some(IceEvent::ConsentExpired));
        assert_eq!(ice.handle_timeout(t5 + Duration::from_secs(60)), None, "reported once");
        assert_eq!(ice.poll_timeout(), None);
    }

    #[test]
    fn generated_credentials_have_rfc_8839_lengths_and_ice_chars() {
        let c = IceCredentials::generate(&mut CountingKeys::default()).unwrap();
        assert_eq!((c.ufrag.len(), c.pwd.len()), (8, 24));
        assert!(c.ufrag.chars().chain(c.pwd.chars()).all(|ch| ch.is_ascii_alphanumeric()));
        assert!(!format!("{c:?}").contains(&c.pwd), "the password stays out of logs");
    }
}
