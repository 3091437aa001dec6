//! The replication link secured with the pair's shared secret: a Noise `NNpsk0` handshake (25519, ChaChaPoly,
//! BLAKE2s), then the link's text (hello line, record lines) in Noise transport messages, each framed with a
//! two-byte length. Sans-IO: bytes in, bytes and decisions out; `ha.rs` moves them over TCP.
//!
//! Why Noise and not TLS: both boxes hold one symmetric secret and no certificates. `NNpsk0` makes that secret
//! the whole of the authentication (a peer without it cannot complete message 1 or 2) with fresh ephemeral keys
//! per connection (forward secrecy for the SRTP keys the records carry), and `snow` is the well-kept Rust
//! implementation; rustls's PSK support is for resumption only.
//!
//! On the wire, after TCP connects: the active writes [`PREAMBLE`] and the framed handshake message 1; the standby
//! answers `ok\n` and the framed message 2, or a `refused CODE\n` line ([`Refusal`]) and closes. A standby
//! without a secret answers a preamble with a refusal too, so two boxes that disagree about having a secret never
//! pair silently.

use super::keys::PairKeys;

/// What the active writes first on a secured link (a plain link starts with its JSON hello instead).
pub const PREAMBLE: &str = "SBC-HA-NOISE/1";
/// The Noise protocol name.
const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Binds the handshake to this use of the secret.
const PROLOGUE: &[u8] = b"sbc ha replication link v1";
/// A Noise message is at most this long (the Noise spec's limit).
pub const MAX_MESSAGE: usize = 65_535;
/// ChaChaPoly's tag.
const TAG: usize = 16;
/// Plain text carried by one transport message.
pub const MAX_PLAIN: usize = MAX_MESSAGE - TAG;

/// Why a link was refused or torn down; the `reason` label of `sbc_ha_link_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The handshake did not authenticate: the two boxes' secrets differ.
    #[error("the peer's secret differs from this box's ([ha] secret_env / secret_file must be the same on both)")]
    SecretDiffers,
    /// This box has a secret; the peer speaks the plain link.
    #[error("the peer has no [ha] secret (a plain link) and this box has one: give both boxes the same secret")]
    PeerHasNoSecret,
    /// The peer secures the link; this box has no secret.
    #[error("the peer has an [ha] secret and this box has none: give both boxes the same secret")]
    PeerHasSecret,
    /// A message after the handshake failed its authentication (altered on the way, or not from the peer).
    #[error("a message on the link failed its authentication (altered in transit, or not from the peer)")]
    Tampered,
    /// Not the link's protocol at all.
    #[error("the peer does not speak the replication link's protocol")]
    Garbled,
}

impl Refusal {
    /// The metric label and the code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::SecretDiffers => "secret_differs",
            Refusal::PeerHasNoSecret => "peer_has_no_secret",
            Refusal::PeerHasSecret => "peer_has_secret",
            Refusal::Tampered => "tampered",
            Refusal::Garbled => "garbled",
        }
    }

    /// The line the standby sends before closing.
    pub fn line(self) -> String {
        format!("refused {}\n", self.code())
    }

    /// What a `refused CODE` line from the standby means, told from the active's side: the standby's "the peer
    /// has no secret" is this box's "the standby has a secret", and so on.
    pub fn from_standby(line: &str) -> Option<Refusal> {
        Some(match line.trim().strip_prefix("refused ")? {
            "secret_differs" => Refusal::SecretDiffers,
            "peer_has_no_secret" => Refusal::PeerHasSecret,
            "peer_has_secret" => Refusal::PeerHasNoSecret,
            "tampered" => Refusal::Tampered,
            _ => Refusal::Garbled,
        })
    }
}

fn builder(keys: &PairKeys) -> snow::Builder<'_> {
    snow::Builder::new(PATTERN.parse().expect("a valid Noise pattern"))
        .prologue(PROLOGUE)
        .expect("one prologue")
        .psk(0, keys.link_psk())
        .expect("psk location 0 of NNpsk0")
}

/// Frames a Noise message: two bytes of length, big-endian.
fn frame(message: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(message.len()).expect("Noise messages fit in 16 bits");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
}

/// The active's handshake in progress.
pub struct Initiator {
    state: snow::HandshakeState,
}

impl Initiator {
    /// Starts a handshake: returns it and what to write first (preamble line, framed message 1).
    pub fn start(keys: &PairKeys) -> (Initiator, Vec<u8>) {
        let mut state = builder(keys).build_initiator().expect("an NNpsk0 initiator");
        let mut msg = vec![0u8; MAX_MESSAGE];
        let n = state.write_message(&[], &mut msg).expect("message 1 fits");
        let mut out = format!("{PREAMBLE}\n").into_bytes();
        frame(&msg[..n], &mut out);
        (Initiator { state }, out)
    }

    /// Message 2 (unframed) from the standby: the link is up, or the secrets differ.
    pub fn finish(mut self, message2: &[u8]) -> Result<Transport, Refusal> {
        let mut payload = vec![0u8; MAX_MESSAGE];
        self.state.read_message(message2, &mut payload).map_err(|_| Refusal::SecretDiffers)?;
        self.state.into_transport_mode().map(|state| Transport { state }).map_err(|_| Refusal::Garbled)
    }
}

/// The standby's side: message 1 (unframed) in; the transport and what to answer (`ok` line and framed message 2),
/// or the refusal.
pub fn respond(keys: &PairKeys, message1: &[u8]) -> Result<(Transport, Vec<u8>), Refusal> {
    let mut state = builder(keys).build_responder().expect("an NNpsk0 responder");
    let mut payload = vec![0u8; MAX_MESSAGE];
    state.read_message(message1, &mut payload).map_err(|_| Refusal::SecretDiffers)?;
    let mut msg = vec![0u8; MAX_MESSAGE];
    let n = state.write_message(&[], &mut msg).map_err(|_| Refusal::Garbled)?;
    let mut out = b"ok\n".to_vec();
    frame(&msg[..n], &mut out);
    let state = state.into_transport_mode().map_err(|_| Refusal::Garbled)?;
    Ok((Transport { state }, out))
}

/// The link once the handshake is done: text in, framed messages out, and back.
pub struct Transport {
    state: snow::TransportState,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// Encrypts `plain` into as many framed messages as it takes (a snapshot may be megabytes).
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let chunks = plain.len().div_ceil(MAX_PLAIN).max(1);
        let mut out = Vec::with_capacity(plain.len() + chunks * (TAG + 2));
        let mut msg = vec![0u8; MAX_MESSAGE];
        for chunk in plain.chunks(MAX_PLAIN) {
            let n = self.state.write_message(chunk, &mut msg).expect("a chunk fits one message");
            frame(&msg[..n], &mut out);
        }
        out
    }

    /// Decrypts one message (unframed).
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut plain = vec![0u8; message.len()];
        let n = self.state.read_message(message, &mut plain).map_err(|_| Refusal::Tampered)?;
        plain.truncate(n);
        Ok(plain)
    }
}

/// Splits a byte stream into framed messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    /// Bytes as they came off the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one is in.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let len = usize::from(u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]));
        if self.buf.len() < 2 + len {
            return None;
        }
        let message = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(message)
    }
}

/// Splits decrypted text into lines (a record may span messages; a message may hold many records).
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// Decrypted text.
    pub fn push(&mut self, text: &[u8]) {
        self.buf.extend_from_slice(text);
    }

    /// The next whole line, without its newline (lossy on invalid UTF-8: such a line fails to parse anyway).
    pub fn next_line(&mut self) -> Option<String> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..=end);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> PairKeys {
        PairKeys::derive(secret.as_bytes())
    }

    /// Splits `bytes` after its first line: (line, rest).
    fn line_and_rest(bytes: &[u8]) -> (String, Vec<u8>) {
        let end = bytes.iter().position(|&b| b == b'\n').expect("a line");
        (String::from_utf8(bytes[..end].to_vec()).unwrap(), bytes[end + 1..].to_vec())
    }

    fn messages(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut d = Deframer::default();
        d.push(bytes);
        std::iter::from_fn(|| d.next_message()).collect()
    }

    /// A handshake between boxes with these secrets: both transports, or the standby's refusal.
    fn handshake(active: &str, standby: &str) -> Result<(Transport, Transport), Refusal> {
        let (init, first) = Initiator::start(&keys(active));
        let (preamble, rest) = line_and_rest(&first);
        assert_eq!(preamble, PREAMBLE);
        let m1 = messages(&rest);
        assert_eq!(m1.len(), 1);
        let (standby_side, answer) = respond(&keys(standby), &m1[0])?;
        let (ok, rest) = line_and_rest(&answer);
        assert_eq!(ok, "ok");
        let m2 = messages(&rest);
        Ok((init.finish(&m2[0])?, standby_side))
    }

    #[test]
    fn records_larger_than_one_noise_message_cross_the_link_whole() {
        let (mut active, mut standby) = handshake("pair secret", "pair secret").expect("same secret pairs");
        let big = "x".repeat(150_000);
        let text = format!("{{\"hello\":1}}\n{big}\nsecond\n");
        let wire = active.seal(text.as_bytes());
        assert!(!wire.windows(1000).any(|w| w == &big.as_bytes()[..1000]), "the text is encrypted");
        let mut deframer = Deframer::default();
        let mut lines = Lines::default();
        let mut got = Vec::new();
        // Delivered in odd-sized pieces, as TCP may.
        for piece in wire.chunks(7_001) {
            deframer.push(piece);
            while let Some(m) = deframer.next_message() {
                assert!(m.len() <= MAX_MESSAGE);
                lines.push(&standby.open(&m).expect("authentic"));
                got.extend(std::iter::from_fn(|| lines.next_line()));
            }
        }
        assert_eq!(messages(&wire).len(), 3, "150 kB takes three messages");
        assert_eq!(got, ["{\"hello\":1}", big.as_str(), "second"]);
    }

    #[test]
    fn a_standby_with_another_secret_refuses_message_one() {
        assert_eq!(handshake("pair secret", "another").map(|_| ()).unwrap_err(), Refusal::SecretDiffers);
    }

    #[test]
    fn an_active_refuses_a_message_two_made_with_another_secret() {
        let (init, _) = Initiator::start(&keys("pair secret"));
        // A standby that has another secret but answers anyway (an impostor): built on its own message 1.
        let (_, impostor_first) = Initiator::start(&keys("another"));
        let m1 = messages(&line_and_rest(&impostor_first).1).remove(0);
        let (_, answer) = respond(&keys("another"), &m1).expect("the impostor's own handshake");
        let m2 = messages(&line_and_rest(&answer).1).remove(0);
        assert_eq!(init.finish(&m2).unwrap_err(), Refusal::SecretDiffers);
    }

    #[test]
    fn a_tampered_message_is_refused() {
        let (mut active, mut standby) = handshake("pair secret", "pair secret").unwrap();
        let mut m = messages(&active.seal(b"{\"record\":1}\n")).remove(0);
        m[5] ^= 1;
        assert_eq!(standby.open(&m).unwrap_err(), Refusal::Tampered);
    }

    #[test]
    fn refusal_codes_read_from_the_actives_side() {
        for (standby_said, active_hears) in [
            (Refusal::SecretDiffers, Refusal::SecretDiffers),
            (Refusal::PeerHasNoSecret, Refusal::PeerHasSecret),
            (Refusal::PeerHasSecret, Refusal::PeerHasNoSecret),
        ] {
            assert_eq!(Refusal::from_standby(&standby_said.line()), Some(active_hears));
        }
        assert_eq!(Refusal::from_standby("{\"call\":1}"), None);
    }
}
