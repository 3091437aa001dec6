//! DTLS-SRTP on a WebRTC leg (RFC 5763, RFC 5764) with rtc-dtls: the relay's certificate and its fingerprint for
//! SDP, the role from `a=setup`, the handshake with its retransmit timer, the peer's certificate checked against the
//! fingerprint in its SDP, and the SRTP keys exported for [`crate::srtp::EndpointCrypto`].
//!
//! Roles (RFC 5763 §5): answering a browser's offer (`a=setup:actpass`) we say `a=setup:active` and are the DTLS
//! client, as RFC 5763 recommends for the answerer and as the reference SBC does with Chromium; an offer of
//! `active` makes us the server, `passive` the client. When we offer (`actpass`) the answer decides.
//!
//! rtc-dtls's endpoint keys associations by remote address; a leg has exactly one, whose browser address is the
//! ICE latch's business (it may move on nomination), so the association is filed under one fixed placeholder
//! address and datagrams go to wherever [`super::ice::IceLite::peer`] says.

use crate::sdes::{KeyMaterial, SrtpKeys, Suite};
use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a handshake may take from the leg's start (ICE included: as DTLS client we start on the first
/// authenticated check). rtc-dtls gives up by itself earlier when a flight went unanswered through 7
/// retransmissions, 1 s apart (about 8 s after the flight): both end as [`DtlsError::Timeout`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The exporter label of RFC 5764 §4.2.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// The key of the leg's one association in rtc-dtls's endpoint (see the module comment); never sent anything.
const ASSOCIATION: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9);
/// The profiles we offer as client and accept as server, in our order: the one every browser has first (the
/// reference SBC gets it from Chromium), then AES-128-GCM (RFC 7714), which rtc-srtp also terminates.
const PROFILES: [SrtpProtectionProfile; 2] =
    [SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80, SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm];

/// Why a DTLS operation failed. Every variant ends the leg's media: the caller counts it by [`DtlsError::label`]
/// and reports the leg as failed (the signalling side sends BYE).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// The relay's certificate could not be generated (the crypto provider failed): a start-up error.
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    /// rtc-dtls refused our configuration (a bug of ours, not the peer's).
    #[error("DTLS configuration: {0}")]
    Config(String),
    /// The peer's certificate does not have the fingerprint of its SDP: someone else answered the handshake.
    #[error("the peer's DTLS certificate does not match the fingerprint in its SDP")]
    FingerprintMismatch,
    /// The handshake failed (a fatal alert, a malformed record, retransmissions exhausted).
    #[error("DTLS handshake: {0}")]
    Handshake(String),
    /// No handshake within [`HANDSHAKE_TIMEOUT`], or a flight unanswered through its retransmissions: the
    /// time since the leg's start.
    #[error("no DTLS handshake after {0:?}")]
    Timeout(Duration),
    /// The handshake agreed on a profile whose keys we cannot use.
    #[error("DTLS-SRTP profile {0:?} is not one we terminate")]
    Profile(SrtpProtectionProfile),
}

impl DtlsError {
    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Certificate(_) => "dtls_certificate",
            Self::Config(_) => "dtls_config",
            Self::FingerprintMismatch => "dtls_fingerprint_mismatch",
            Self::Handshake(_) => "dtls_handshake",
            Self::Timeout(_) => "dtls_timeout",
            Self::Profile(_) => "dtls_profile",
        }
    }
}

/// A SHA-256 certificate fingerprint, as `a=fingerprint:sha-256 AB:CD:...` carries it (RFC 8122 §5); in control
/// messages as that text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Fingerprint(pub [u8; 32]);

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> Self {
        f.to_string()
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = FingerprintError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    /// The value of `a=fingerprint`: `sha-256` and the upper-case colon-separated hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha-256 ")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// An `a=fingerprint` value we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// A hash function other than SHA-256 (browsers all use SHA-256; SHA-1 is deprecated by RFC 8122 §5).
    #[error("fingerprint hash function {0:?} is not sha-256")]
    HashFunction(String),
    /// Not 32 colon-separated hex bytes.
    #[error("malformed sha-256 fingerprint")]
    Malformed,
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// The value of an `a=fingerprint` attribute: `sha-256 AB:CD:...` (hash name and hex case-insensitive).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (hash, hex) = value.trim().split_once(' ').ok_or(FingerprintError::Malformed)?;
        if !hash.eq_ignore_ascii_case("sha-256") {
            return Err(FingerprintError::HashFunction(hash.to_owned()));
        }
        let mut out = [0u8; 32];
        let mut parts = hex.trim().split(':');
        for byte in out.iter_mut() {
            let part = parts.next().filter(|p| p.len() == 2).ok_or(FingerprintError::Malformed)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| FingerprintError::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(FingerprintError::Malformed);
        }
        Ok(Self(out))
    }
}

/// The `a=setup` attribute (RFC 4145 §4, RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `active`: will start the handshake (DTLS client).
    Active,
    /// `passive`: will wait for it (DTLS server).
    Passive,
    /// `actpass`: either; the answerer decides. What offers say.
    ActPass,
    /// `holdconn`: no connection now.
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::ActPass => "actpass",
            Self::HoldConn => "holdconn",
        }
    }

    /// The value `name` (case-insensitive), if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Active, Self::Passive, Self::ActPass, Self::HoldConn]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The relay's side of a leg's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtlsRole {
    /// We send the ClientHello (`a=setup:active` from us).
    Client,
    /// We wait for it (`a=setup:passive` from us).
    Server,
}

impl DtlsRole {
    /// Our role when we answer an offer that said `offered`, and the `a=setup` of our answer; `None` for
    /// `holdconn` (no media). Towards a browser's `actpass` we are the client (RFC 5763 §5).
    pub fn answering(offered: Setup) -> Option<(Self, Setup)> {
        match offered {
            Setup::ActPass | Setup::Passive => Some((Self::Client, Setup::Active)),
            Setup::Active => Some((Self::Server, Setup::Passive)),
            Setup::HoldConn => None,
        }
    }

    /// Our role when our offer said `actpass` and the answer said `answered`; `None` for an answer that cannot
    /// be one (`actpass` is not allowed in answers, RFC 4145 §4.1) or `holdconn`.
    pub fn from_answer(answered: Setup) -> Option<Self> {
        match answered {
            Setup::Active => Some(Self::Server),
            Setup::Passive => Some(Self::Client),
            Setup::ActPass | Setup::HoldConn => None,
        }
    }
}

/// The relay's DTLS certificate: self-signed ECDSA P-256, generated at start, one for every leg (browsers pin
/// nothing: the fingerprint in our SDP is what they check).
#[derive(Clone)]
pub struct DtlsCertificate {
    certificate: Certificate,
    fingerprint: Fingerprint,
}

impl fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsCertificate").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// A fresh self-signed certificate (key from the crypto provider's CSPRNG).
    pub fn generate() -> Result<Self, DtlsError> {
        let crypto = crate::srtp::provider().crypto();
        let certificate = Certificate::generate_self_signed_with_alg(
            vec!["sbc-media-relay".to_owned()],
            &rcgen::PKCS_ECDSA_P256_SHA256,
            crypto,
        )
        .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let der = certificate.certificate.first().ok_or_else(|| DtlsError::Certificate("no certificate".into()))?;
        let fingerprint = Fingerprint::of_der(der);
        Ok(Self { certificate, fingerprint })
    }

    /// What our SDP says in `a=fingerprint`.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// What a leg's handshake reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed with the expected peer: SRTP keys for the leg's [`crate::srtp::EndpointCrypto`]
    /// (`ours` protects what we send the browser, `theirs` unprotects what it sends).
    Connected(SrtpKeys),
    /// The peer sent `close_notify` (a browser hanging up its peer connection): the leg's media ended.
    Closed,
}

#[derive(Debug)]
enum Phase {
    Handshaking,
    Connected,
    Done,
}

/// The DTLS association of one WebRTC leg.
///
/// Call order: [`DtlsLeg::new`] when the leg's SDP is agreed; as client, [`DtlsLeg::start`] once the browser's
/// address is latched (the first authenticated STUN check); [`DtlsLeg::handle_datagram`] for every datagram
/// [`super::demux::demux`] calls DTLS; after each call and after [`DtlsLeg::handle_timeout`], drain
/// [`DtlsLeg::poll_transmit`] and send the datagrams to the latched address; wake at [`DtlsLeg::poll_timeout`].
pub struct DtlsLeg {
    endpoint: Endpoint,
    role: DtlsRole,
    config: Arc<HandshakeConfig>,
    mismatch: Arc<AtomicBool>,
    phase: Phase,
    started: bool,
    created: Instant,
    deadline: Instant,
}

impl fmt::Debug for DtlsLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsLeg")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl DtlsLeg {
    /// The association of a leg where we are `role`, with our `certificate`, accepting only a peer whose
    /// certificate has `peer_fingerprint` (from its SDP), from `now`.
    pub fn new(
        now: Instant,
        certificate: &DtlsCertificate,
        role: DtlsRole,
        peer_fingerprint: Fingerprint,
    ) -> Result<Self, DtlsError> {
        let mismatch = Arc::new(AtomicBool::new(false));
        let flag = mismatch.clone();
        let is_client = role == DtlsRole::Client;
        let config = ConfigBuilder::default()
            .with_crypto_provider(crate::srtp::provider().clone())
            .with_certificates(vec![certificate.certificate.clone()])
            .with_srtp_protection_profiles(PROFILES.to_vec())
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            // The peer is authenticated by its SDP fingerprint, not by a CA chain (RFC 5763 §6.6).
            .with_insecure_skip_verify(true)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                if certs.first().is_some_and(|der| Fingerprint::of_der(der) == peer_fingerprint) {
                    Ok(())
                } else {
                    flag.store(true, Ordering::Relaxed);
                    Err(rtc_shared::error::Error::Other("certificate fingerprint mismatch".into()))
                }
            })))
            .build(is_client, None)
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        let config = Arc::new(config);
        let server = (!is_client).then(|| config.clone());
        Ok(Self {
            endpoint: Endpoint::new(ASSOCIATION, TransportProtocol::UDP, server),
            role,
            config,
            mismatch,
            phase: Phase::Handshaking,
            started: false,
            created: now,
            deadline: now + HANDSHAKE_TIMEOUT,
        })
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Whether the handshake completed (and the leg has SRTP keys).
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    /// As client, sends the ClientHello (once; later calls and calls as server do nothing).
    pub fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.role != DtlsRole::Client || self.started {
            return Ok(());
        }
        self.started = true;
        self.endpoint
            .connect(now, ASSOCIATION, self.config.clone(), None)
            .map_err(|e| self.failed(DtlsError::Handshake(e.to_string())))
    }

    /// A datagram from the browser that [`super::demux::demux`] called DTLS.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<Option<DtlsEvent>, DtlsError> {
        if matches!(self.phase, Phase::Done) || (self.role == DtlsRole::Client && !self.started) {
            return Ok(None);
        }
        let events = self
            .endpoint
            .read(now, ASSOCIATION, None, BytesMut::from(datagram))
            .map_err(|e| self.handshake_error(e))?;
        let mut out = None;
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => out = Some(DtlsEvent::Connected(self.export_keys()?)),
                EndpointEvent::PeerClosed => {
                    self.phase = Phase::Done;
                    out = Some(DtlsEvent::Closed);
                }
                // No data channels on a relay leg: application data is dropped.
                _ => {}
            }
        }
        if matches!(out, Some(DtlsEvent::Connected(_))) {
            self.phase = Phase::Connected;
        }
        Ok(out)
    }

    /// The next datagram to send to the browser.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.endpoint.poll_transmit().map(|t| t.message)
    }

    /// When [`DtlsLeg::handle_timeout`] is next due: a flight's retransmission or the handshake deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Handshaking => {
                let retransmit = self.endpoint.poll_timeout(&ASSOCIATION);
                Some(retransmit.map_or(self.deadline, |r| r.min(self.deadline)))
            }
            Phase::Connected | Phase::Done => None,
        }
    }

    /// Advances the handshake to `now`: retransmits a flight, or fails past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if !matches!(self.phase, Phase::Handshaking) {
            return Ok(());
        }
        if now >= self.deadline {
            return Err(self.failed(DtlsError::Timeout(HANDSHAKE_TIMEOUT)));
        }
        match self.endpoint.handle_timeout(ASSOCIATION, now) {
            Ok(()) => Ok(()),
            // No association yet (a server waiting for its ClientHello, a client not started): nothing to resend.
            Err(_) if self.endpoint.get_connection_state(ASSOCIATION).is_none() => Ok(()),
            // The only failure of a timer: a flight's retransmissions are exhausted.
            Err(_) => Err(self.failed(DtlsError::Timeout(now.saturating_duration_since(self.created)))),
        }
    }

    fn failed(&mut self, error: DtlsError) -> DtlsError {
        self.phase = Phase::Done;
        error
    }

    fn handshake_error(&mut self, e: rtc_shared::error::Error) -> DtlsError {
        if self.mismatch.load(Ordering::Relaxed) {
            self.failed(DtlsError::FingerprintMismatch)
        } else {
            self.failed(DtlsError::Handshake(e.to_string()))
        }
    }

    /// The leg's SRTP keys from the completed handshake (RFC 5764 §4.2): client key, server key, client salt,
    /// server salt; ours are the client's when we are the client.
    fn export_keys(&mut self) -> Result<SrtpKeys, DtlsError> {
        let state = self
            .endpoint
            .get_connection_state(ASSOCIATION)
            .ok_or_else(|| DtlsError::Handshake("association vanished".into()))?;
        let profile = state.srtp_protection_profile();
        let suite = match profile {
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Suite::AesCm128HmacSha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => Suite::AesCm128HmacSha1_32,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Suite::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => Suite::AeadAes256Gcm,
            other => return Err(self.failed(DtlsError::Profile(other))),
        };
        let (key, salt) = (suite.key_len(), suite.material_len() - suite.key_len());
        let material = state
            .export_keying_material(EXPORTER_LABEL, &[], 2 * (key + salt))
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        let m: &[u8] = material.as_ref();
        let client = [&m[..key], &m[2 * key..2 * key + salt]].concat();
        let server = [&m[key..2 * key], &m[2 * key + salt..]].concat();
        let (ours, theirs) = match self.role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        Ok(SrtpKeys { suite, ours: KeyMaterial::new(ours), theirs: KeyMaterial::new(theirs) })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::srtp::EndpointCrypto;
    use rtc_srtp::context::Context;
    use rtc_srtp::protection_profile::ProtectionProfile;

    fn browser_addr() -> SocketAddr {
        "198.18.1.10:50000".parse().unwrap()
    }

    /// A browser's DTLS side, played by rtc-dtls itself: its own certificate, checking ours against the
    /// fingerprint of our SDP.
    pub(crate) struct Browser {
        pub(crate) endpoint: Endpoint,
        pub(crate) certificate: DtlsCertificate,
        pub(crate) config: Arc<HandshakeConfig>,
        pub(crate) connected: bool,
    }

    impl Browser {
        pub(crate) fn new(is_client: bool, expected_relay: Fingerprint, profiles: Vec<SrtpProtectionProfile>) -> Self {
            let certificate = DtlsCertificate::generate().unwrap();
            let config = ConfigBuilder::default()
                .with_crypto_provider(crate::srtp::provider().clone())
                .with_certificates(vec![certificate.certificate.clone()])
                .with_srtp_protection_profiles(profiles)
                .with_insecure_skip_verify(true)
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                    if Fingerprint::of_der(&certs[0]) == expected_relay {
                        Ok(())
                    } else {
                        Err(rtc_shared::error::Error::Other("relay fingerprint".into()))
                    }
                })))
                .build(is_client, None)
                .unwrap();
            let config = Arc::new(config);
            let server = (!is_client).then(|| config.clone());
            let endpoint = Endpoint::new(browser_addr(), TransportProtocol::UDP, server);
            Self { endpoint, certificate, config, connected: false }
        }

        /// One datagram from the relay.
        pub(crate) fn feed(&mut self, now: Instant, datagram: &[u8]) {
            if let Ok(events) = self.endpoint.read(now, ASSOCIATION, None, BytesMut::from(datagram)) {
                self.connected |= events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            }
        }

        /// What the browser sends next.
        pub(crate) fn drain(&mut self) -> Vec<BytesMut> {
            std::iter::from_fn(|| self.endpoint.poll_transmit().map(|t| t.message)).collect()
        }

        /// Feeds the relay's datagrams to the browser; true when the browser's handshake completed.
        fn receive(&mut self, now: Instant, relay: &mut DtlsLeg) {
            while let Some(d) = relay.poll_transmit() {
                if let Ok(events) = self.endpoint.read(now, ASSOCIATION, None, d) {
                    self.connected |= events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete));
                }
            }
        }

        /// Sends the browser's datagrams to the relay, collecting its events.
        fn send(&mut self, now: Instant, relay: &mut DtlsLeg) -> Vec<Result<Option<DtlsEvent>, DtlsError>> {
            let mut out = Vec::new();
            while let Some(t) = self.endpoint.poll_transmit() {
                out.push(relay.handle_datagram(now, &t.message));
            }
            out
        }

        /// The browser's SRTP contexts as a WebRTC stack builds them (rtc-srtp's own key split).
        pub(crate) fn srtp(&self, is_client: bool) -> (Context, Context) {
            let state = self.endpoint.get_connection_state(ASSOCIATION).unwrap();
            let profile = match state.srtp_protection_profile() {
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
                _ => ProtectionProfile::Aes128CmHmacSha1_80,
            };
            let mut cfg = rtc_srtp::config::Config { profile, ..Default::default() };
            let material = state.export_keying_material(EXPORTER_LABEL, &[], cfg.keying_material_len()).unwrap();
            cfg.set_session_keys_from_keying_material(material.as_ref(), is_client).unwrap();
            let crypto = crate::srtp::provider().crypto();
            let k = &cfg.keys;
            let local = Context::new(&k.local_master_key, &k.local_master_salt, profile, None, None, crypto);
            let remote = Context::new(&k.remote_master_key, &k.remote_master_salt, profile, None, None, crypto);
            (local.unwrap(), remote.unwrap())
        }
    }

    /// Runs both sides until neither has anything to send; the relay's events.
    fn run(now: Instant, relay: &mut DtlsLeg, browser: &mut Browser) -> Vec<Result<Option<DtlsEvent>, DtlsError>> {
        let mut events = Vec::new();
        for _ in 0..16 {
            browser.receive(now, relay);
            let got = browser.send(now, relay);
            if got.is_empty() {
                break;
            }
            events.extend(got);
        }
        events
    }

    pub(crate) fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend((0..160u8).map(|i| i ^ seq as u8));
        p
    }

    fn connected(events: Vec<Result<Option<DtlsEvent>, DtlsError>>) -> SrtpKeys {
        let mut keys = None;
        for e in events {
            if let Some(DtlsEvent::Connected(k)) = e.expect("no handshake error") {
                keys = Some(k);
            }
        }
        keys.expect("the relay reported Connected")
    }

    #[test]
    fn relay_as_dtls_client_completes_against_a_browser_and_srtp_round_trips() {
        let now = Instant::now();
        let relay_cert = DtlsCertificate::generate().unwrap();
        // The browser's offer said actpass: it is the server, we answer active.
        let (role, setup) = DtlsRole::answering(Setup::ActPass).unwrap();
        assert_eq!((role, setup), (DtlsRole::Client, Setup::Active));
        let profiles = vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
        let mut browser = Browser::new(false, relay_cert.fingerprint(), profiles);
        let mut relay = DtlsLeg::new(now, &relay_cert, role, browser.certificate.fingerprint()).unwrap();
        assert!(relay.poll_transmit().is_none(), "nothing before the ICE latch");
        relay.start(now).unwrap();
        let keys = connected(run(now, &mut relay, &mut browser));
        assert!(browser.connected, "the browser completed too");
        assert!(relay.is_connected());
        assert_eq!(relay.poll_timeout(), None, "no timer once connected");
        assert_eq!(keys.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!((keys.ours.bytes().len(), keys.theirs.bytes().len()), (30, 30));
        assert_ne!(keys.ours, keys.theirs);

        // SRTP both ways: the relay's EndpointCrypto against the browser's rtc-srtp contexts.
        let (mut b_out, mut b_in) = browser.srtp(false);
        let mut relay_srtp = EndpointCrypto::new(&keys);
        for seq in 1..=5u16 {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            assert_eq!(&relay_srtp.unprotect(now, &wire, false).unwrap()[..], &rtp(seq)[..], "browser → relay");
            let back = relay_srtp.protect(&rtp(seq), false).unwrap();
            assert_eq!(&b_in.decrypt_rtp(&back).unwrap()[..], &rtp(seq)[..], "relay → browser");
        }
    }

    #[test]
    fn relay_as_dtls_server_gets_gcm_when_the_browser_prefers_it() {
        let now = Instant::now();
        let relay_cert = DtlsCertificate::generate().unwrap();
        let (role, setup) = DtlsRole::answering(Setup::Active).unwrap();
        assert_eq!((role, setup), (DtlsRole::Server, Setup::Passive));
        let profiles =
            vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm, SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
        let mut browser = Browser::new(true, relay_cert.fingerprint(), profiles);
        let mut relay = DtlsLeg::new(now, &relay_cert, role, browser.certificate.fingerprint()).unwrap();
        relay.start(now).unwrap();
        assert!(relay.poll_transmit().is_none(), "a server sends nothing first");
        browser.endpoint.connect(now, ASSOCIATION, browser.config.clone(), None).unwrap();
        let events = browser.send(now, &mut relay);
        let mut events2 = run(now, &mut relay, &mut browser);
        events2.extend(events);
        let keys = connected(events2);
        // rtc-dtls as server takes the first of the client's profiles that it supports.
        assert_eq!(keys.suite, Suite::AeadAes128Gcm);
        let (mut b_out, mut b_in) = browser.srtp(true);
        let mut relay_srtp = EndpointCrypto::new(&keys);
        let wire = b_out.encrypt_rtp(&rtp(9)).unwrap();
        assert_eq!(&relay_srtp.unprotect(now, &wire, false).unwrap()[..], &rtp(9)[..]);
        let back = relay_srtp.protect(&rtp(9), false).unwrap();
        assert_eq!(&b_in.decrypt_rtp(&back).unwrap()[..], &rtp(9)[..]);
    }

    #[test]
    fn a_peer_certificate_other_than_the_sdp_fingerprint_is_refused() {
        let now = Instant::now();
        let relay_cert = DtlsCertificate::generate().unwrap();
        let profiles = vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
        let mut impostor = Browser::new(false, relay_cert.fingerprint(), profiles);
        let sdp_fingerprint = DtlsCertificate::generate().unwrap().fingerprint();
        let mut relay = DtlsLeg::new(now, &relay_cert, DtlsRole::Client, sdp_fingerprint).unwrap();
        relay.start(now).unwrap();
        let events = run(now, &mut relay, &mut impostor);
        let errors: Vec<_> = events.into_iter().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1, "one failure, then the leg is done: {errors:?}");
        assert_eq!(errors[0].label(), "dtls_fingerprint_mismatch");
        assert!(!relay.is_connected());
        assert_eq!(relay.poll_timeout(), None);
        assert!(matches!(relay.handle_datagram(now, &[22, 0xfe, 0xfd]), Ok(None)), "ignored once failed");
    }

    #[test]
    fn lost_client_hello_is_retransmitted_and_the_handshake_gives_up_at_its_deadline() {
        let t0 = Instant::now();
        let relay_cert = DtlsCertificate::generate().unwrap();
        let other = DtlsCertificate::generate().unwrap().fingerprint();
        let mut relay = DtlsLeg::new(t0, &relay_cert, DtlsRole::Client, other).unwrap();
        relay.start(t0).unwrap();
        let first: Vec<_> = std::iter::from_fn(|| relay.poll_transmit()).collect();
        assert_eq!(first.len(), 1, "one ClientHello");
        let due = relay.poll_timeout().unwrap();
        assert!(due > t0 && due <= t0 + Duration::from_secs(1), "retransmit within 1 s: {:?}", due - t0);
        relay.handle_timeout(due).unwrap();
        let again: Vec<_> = std::iter::from_fn(|| relay.poll_transmit()).collect();
        assert_eq!(again.len(), 1, "the ClientHello again");
        assert_eq!(again[0][0], 22, "a handshake record");
        let err = relay.handle_timeout(t0 + HANDSHAKE_TIMEOUT).unwrap_err();
        assert_eq!(err.label(), "dtls_timeout");
        assert_eq!(relay.poll_timeout(), None);
    }

    #[test]
    fn fingerprints_round_trip_through_sdp_text_and_bad_ones_are_refused() {
        let f = DtlsCertificate::generate().unwrap().fingerprint();
        let text = f.to_string();
        assert!(text.starts_with("sha-256 ") && text.len() == 8 + 32 * 3 - 1, "{text}");
        assert_eq!(text.parse::<Fingerprint>(), Ok(f));
        assert_eq!(text.to_lowercase().replace("sha-256", "SHA-256").parse::<Fingerprint>(), Ok(f));
        assert!(matches!("sha-1 AB:CD".parse::<Fingerprint>(), Err(FingerprintError::HashFunction(_))));
        assert_eq!(text[..text.len() - 3].parse::<Fingerprint>(), Err(FingerprintError::Malformed), "31 bytes");
        assert_eq!(format!("{text}:00").parse::<Fingerprint>(), Err(FingerprintError::Malformed), "33 bytes");
        assert_eq!("sha-256 zz".parse::<Fingerprint>(), Err(FingerprintError::Malformed));
        assert_eq!(Setup::from_name("ACTPASS"), Some(Setup::ActPass));
        assert_eq!(Setup::from_name("sometimes"), None);
        assert_eq!(DtlsRole::from_answer(Setup::Active), Some(DtlsRole::Server));
        assert_eq!(DtlsRole::from_answer(Setup::ActPass), None, "actpass is no answer");
    }
}
