//! The bench's browser: one UDP socket per WebRTC leg doing what a browser does against the relay's ICE-lite and
//! DTLS client (`a=setup:active` in our answer): binding requests with MESSAGE-INTEGRITY and FINGERPRINT until the
//! relay answers, the DTLS server side of the handshake (rtc-dtls, a client certificate required, as browsers do),
//! then SRTP contexts from the exported keys (rtc-srtp), as webrtc-rs derives them. Sans-IO in the same way as the
//! relay's own leg: the caller moves datagrams and calls
//! [`BrowserLeg::handle_timeout`] often (every millisecond).

use anyhow::{anyhow, Context as _, Result};
use relay_proto::webrtc::dtls::Fingerprint;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use rtc_stun::attributes::ATTR_USERNAME;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::textattrs::TextAttribute;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The relay's ICE ufrag of every bench leg (in a call, the SBC draws one per leg; the relay does not care).
pub const RELAY_UFRAG: &str = "benchUfr";
/// The relay's ICE password of every bench leg (24 characters, as RFC 8445 asks at least 22).
pub const RELAY_PWD: &str = "benchPasswordOf24Chars00";
/// The browser's ufrag.
pub const BROWSER_UFRAG: &str = "brws";
/// A binding request is sent again this often until the relay answers (browsers start at 50 ms and back off).
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What every browser leg shares: its certificate and DTLS server configuration.
pub struct Browser {
    config: Arc<HandshakeConfig>,
    fingerprint: Fingerprint,
    check: Vec<u8>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl Browser {
    /// A fresh self-signed certificate (ECDSA P-256, as browsers make) and the DTLS server configuration.
    pub fn new() -> Result<Self> {
        let provider = rtc_srtp::crypto::default_provider().context("the ring crypto provider")?;
        let cert = Certificate::generate_self_signed(vec!["browser".to_owned()], provider.crypto())
            .map_err(|e| anyhow!("the browser certificate: {e}"))?;
        let fingerprint = Fingerprint::of_der(cert.certificate[0].as_ref());
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            // A standalone media-relay does not tell its certificate over the control protocol (only the
            // embedded relay gives the SBC its fingerprint), so the bench cannot pin it; the relay checks ours.
            .with_insecure_skip_verify(true)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .build(false, None)
            .map_err(|e| anyhow!("the browser's DTLS configuration: {e}"))?;
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId([7; 12])),
            Box::new(TextAttribute::new(ATTR_USERNAME, format!("{RELAY_UFRAG}:{BROWSER_UFRAG}"))),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(RELAY_PWD.into(), provider.crypto())),
            Box::new(FINGERPRINT),
        ];
        m.build(&setters).map_err(|e| anyhow!("the binding request: {e}"))?;
        Ok(Self { config: Arc::new(config), fingerprint, check: m.raw })
    }

    /// The certificate's fingerprint (the browser's `a=fingerprint`, given to the relay in the leg's spec).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A leg towards the relay socket `relay` from the local address `local`, started at `now`.
    pub fn leg(&self, local: SocketAddr, relay: SocketAddr, now: Instant) -> BrowserLeg {
        BrowserLeg {
            relay,
            dtls: Endpoint::new(local, TransportProtocol::UDP, Some(self.config.clone())),
            check: self.check.clone(),
            answered: false,
            next_check: now,
            started: now,
            connected: None,
            out: Vec::new(),
        }
    }
}

/// What a datagram from the relay was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing new.
    None,
    /// The relay answered our binding request.
    IceAnswered,
    /// The DTLS handshake completed (on our side: the relay completes when our last flight reaches it).
    Connected,
}

/// One browser leg in its handshake.
pub struct BrowserLeg {
    relay: SocketAddr,
    dtls: Endpoint,
    check: Vec<u8>,
    answered: bool,
    next_check: Instant,
    started: Instant,
    connected: Option<Instant>,
    out: Vec<Vec<u8>>,
}

impl std::fmt::Debug for BrowserLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserLeg")
            .field("relay", &self.relay)
            .field("answered", &self.answered)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl BrowserLeg {
    /// Fires the binding-request and DTLS retransmission timers due at `now`; datagrams go out through
    /// [`BrowserLeg::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        if !self.answered && now >= self.next_check {
            self.out.push(self.check.clone());
            self.next_check = now + CHECK_INTERVAL;
        }
        if self.dtls.poll_timeout(&self.relay).is_some_and(|t| now >= t) {
            self.dtls.handle_timeout(self.relay, now).map_err(|e| anyhow!("DTLS retransmissions exhausted: {e}"))?;
        }
        Ok(())
    }

    /// A datagram from the relay (STUN, or DTLS: RFC 7983's first byte tells them apart).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<Progress> {
        match datagram.first() {
            Some(0..=3) => {
                let mut m = Message::new();
                m.unmarshal_binary(datagram).map_err(|e| anyhow!("a STUN answer that does not parse: {e}"))?;
                if m.typ != BINDING_SUCCESS {
                    return Err(anyhow!("the relay answered our binding request with {}", m.typ));
                }
                let first = !self.answered;
                self.answered = true;
                Ok(if first { Progress::IceAnswered } else { Progress::None })
            }
            Some(20..=63) => {
                let events = self
                    .dtls
                    .read(now, self.relay, None, datagram.into())
                    .map_err(|e| anyhow!("DTLS from the relay: {e}"))?;
                if events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete)) && self.connected.is_none() {
                    self.connected = Some(now);
                    return Ok(Progress::Connected);
                }
                Ok(Progress::None)
            }
            _ => Ok(Progress::None),
        }
    }

    /// The next datagram for the relay.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if let Some(d) = self.out.pop() {
            return Some(d);
        }
        self.dtls.poll_transmit().map(|t| t.message.to_vec())
    }

    /// From the start to the handshake's completion on our side.
    pub fn handshake_time(&self) -> Option<Duration> {
        self.connected.map(|c| c.saturating_duration_since(self.started))
    }

    /// The SRTP contexts of a connected leg: (ours, to protect what we send; theirs, to check what the relay
    /// sends), from the keys RFC 5764 §4.2 exports, as the DTLS server.
    pub fn srtp(&self) -> Result<SrtpPair> {
        let state = self.dtls.get_connection_state(self.relay).context("no DTLS association")?;
        let mut srtp =
            rtc_srtp::config::Config { profile: ProtectionProfile::Aes128CmHmacSha1_80, ..Default::default() };
        let material = state
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], srtp.keying_material_len())
            .map_err(|e| anyhow!("exporting the SRTP keys: {e}"))?;
        srtp.set_session_keys_from_keying_material(material.as_ref(), false)
            .map_err(|e| anyhow!("the SRTP keys: {e}"))?;
        let provider = rtc_srtp::crypto::default_provider().context("the ring crypto provider")?;
        let k = &srtp.keys;
        let ctx = |key: &[u8], salt: &[u8]| {
            Context::new(key, salt, srtp.profile, None, None, provider.crypto())
                .map_err(|e| anyhow!("an SRTP context: {e}"))
        };
        Ok(SrtpPair {
            outbound: ctx(&k.local_master_key, &k.local_master_salt)?,
            inbound: ctx(&k.remote_master_key, &k.remote_master_salt)?,
        })
    }
}

/// A connected browser leg's SRTP contexts.
pub struct SrtpPair {
    /// Protects what the browser sends.
    pub outbound: Context,
    /// Authenticates and decrypts what the relay sends to the browser.
    pub inbound: Context,
}

impl std::fmt::Debug for SrtpPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpPair")
    }
}
