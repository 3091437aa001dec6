//! SDES-SRTP (RFC 4568): the crypto suites the relay terminates, the keys, the `a=crypto` attribute, and the
//! policy of a trunk's leg ([`SrtpMode`]).
//!
//! The relay terminates SRTP per leg: what arrives on an SRTP leg is unprotected with that leg's peer's key, what
//! leaves on an SRTP leg is protected with a key of our own for that leg, drawn fresh from the OS's CSPRNG
//! ([`KeySource`]). A peer's key never reaches the other leg: each leg's SDP carries that leg's policy and our key
//! for it ([`crate::negotiate`] decides, per stream, what to offer and answer).
//!
//! Suites (RFC 4568 §6.2, RFC 6188, RFC 7714): AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32,
//! AES_256_CM_HMAC_SHA1_80, AES_256_CM_HMAC_SHA1_32, AEAD_AES_128_GCM and AEAD_AES_256_GCM are accepted in a
//! peer's offer (rtc-srtp implements all six); our offers list [`Suite::OFFERED`].
//!
//! What an `a=crypto` line may hold to be usable ([`CryptoAttr::parse`]): one `inline:` key of the suite's exact
//! length (base64, padded or not), an optional lifetime (read, not enforced: see config/README.md), no MKI (rtc-srtp
//! has no MKI field in its packets), and no session parameter other than `WSH=` (a replay window hint). A line
//! that asks for more (several keys, MKI, `UNENCRYPTED_SRTP`, `KDR`, FEC) is skipped, and another of the peer's
//! lines may still be chosen.

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use rtc_srtp::protection_profile::ProtectionProfile;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a trunk's leg uses for media (`srtp` in a `[[trunk]]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP: our offers carry no key; an `RTP/SAVP` offer from the leg is refused (488), and keys in an
    /// `RTP/AVP` offer are ignored (answered without).
    #[default]
    Off,
    /// SRTP when the peer wants it: our offers are `RTP/AVP` with `a=crypto` lines (best-effort SRTP, as baresip's
    /// `srtp`, Asterisk and FreeSWITCH offer it): a peer that knows SDES answers with a key, one that does not
    /// ignores the lines and answers plain. An offer from the leg is taken as it comes: SRTP with a usable key,
    /// else plain RTP (`RTP/SAVP` without a usable key: 488).
    Optional,
    /// SRTP only: our offers are `RTP/SAVP` with `a=crypto` lines; an offer or answer from the leg without a usable
    /// key is refused (488; an answer ends the call).
    Required,
}

impl SrtpMode {
    /// The configuration value: `off`, `optional`, `required`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }

    /// The mode named `name` (as [`SrtpMode::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Off, Self::Optional, Self::Required].into_iter().find(|m| m.name() == name)
    }
}

/// An SRTP crypto suite (RFC 4568 §6.2, RFC 6188 §7.1, RFC 7714 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 4568 §6.2.1): the suite every SDES peer has.
    AesCm128HmacSha1_80,
    /// The same with a 32-bit tag on SRTP (SRTCP keeps 80 bits, RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// AES-256 counter mode, HMAC-SHA1-80 (RFC 6188).
    AesCm256HmacSha1_80,
    /// AES-256 counter mode, HMAC-SHA1-32 (RFC 6188).
    AesCm256HmacSha1_32,
    /// AES-128 in GCM, authenticated encryption (RFC 7714).
    AeadAes128Gcm,
    /// AES-256 in GCM (RFC 7714).
    AeadAes256Gcm,
}

impl Suite {
    /// Every suite the relay terminates.
    pub const ALL: [Suite; 6] = [
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
        Self::AesCm256HmacSha1_80,
        Self::AesCm256HmacSha1_32,
        Self::AeadAes128Gcm,
        Self::AeadAes256Gcm,
    ];

    /// What our offers list, in our order of preference, with tags 1, 2, 3: the 80-bit suite every SDES peer has
    /// first, then the shorter tag, then GCM. (A peer's offer may pick any of [`Suite::ALL`].)
    pub const OFFERED: [Suite; 3] = [Self::AesCm128HmacSha1_80, Self::AesCm128HmacSha1_32, Self::AeadAes128Gcm];

    /// The name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Self::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Self::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The suite named `name` (case as the RFCs write it; suite names are case-sensitive, RFC 4568 §9.2).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// rtc-srtp's profile for the suite.
    pub(crate) fn profile(self) -> ProtectionProfile {
        match self {
            Self::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Self::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Self::AesCm256HmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            Self::AesCm256HmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
            Self::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            Self::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }

    /// Bytes of master key.
    pub fn key_len(self) -> usize {
        self.profile().key_len()
    }

    /// Bytes of master key and master salt together: what `inline:` carries.
    pub fn material_len(self) -> usize {
        self.profile().key_len() + self.profile().salt_len()
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Suite> for String {
    fn from(s: Suite) -> Self {
        s.name().to_owned()
    }
}

impl TryFrom<String> for Suite {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Suite::from_name(&s).ok_or_else(|| format!("unknown SRTP suite {s:?}"))
    }
}

/// A master key and master salt, concatenated as `inline:` carries them (RFC 4568 §6.1). Printed as
/// `KeyMaterial(30 bytes)`: keys have no business in logs. Serialized as base64 (control messages, replication
/// records).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(Vec<u8>);

impl KeyMaterial {
    /// Key material of `bytes` (not checked against a suite: [`CryptoAttr::parse`] and [`KeyMaterial::generate`]
    /// make them of the right length).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Fresh key material for `suite` from `source`.
    pub fn generate(suite: Suite, source: &mut dyn KeySource) -> Result<Self, KeySourceError> {
        let mut bytes = vec![0u8; suite.material_len()];
        source.fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The bytes: master key, then master salt.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Master key and salt for `suite`, if the material has the suite's length.
    pub(crate) fn split(&self, suite: Suite) -> Option<(&[u8], &[u8])> {
        (self.0.len() == suite.material_len()).then(|| self.0.split_at(suite.key_len()))
    }

    /// The `inline:` text: base64 with padding (RFC 4568 §6.1 uses RFC 4648's base64).
    pub fn to_base64(&self) -> String {
        general_purpose::STANDARD.encode(&self.0)
    }

    /// Key material from base64 (padded or not), as [`KeyMaterial::to_base64`] writes it.
    pub fn from_base64(text: &str) -> Option<Self> {
        LENIENT.decode(text.as_bytes()).ok().map(Self)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial({} bytes)", self.0.len())
    }
}

impl Serialize for KeyMaterial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for KeyMaterial {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        LENIENT.decode(text.as_bytes()).map(Self).map_err(serde::de::Error::custom)
    }
}

/// Base64 as peers write it: with or without the trailing `=`.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The keys of one leg's stream as the relay uses them: `theirs` unprotects what the leg's peer sends, `ours`
/// protects what the relay sends it. Given to the relay in [`crate::control::EndpointSpec::srtp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrtpKeys {
    /// The negotiated suite (both directions use it, RFC 4568 §7.1.2).
    pub suite: Suite,
    /// Our key for this leg: what we put in our SDP towards the leg's peer, drawn for this leg alone.
    pub ours: KeyMaterial,
    /// The leg's peer's key, from its SDP.
    pub theirs: KeyMaterial,
}

/// A usable `a=crypto` attribute (RFC 4568 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    /// The tag that pairs an answer's line with the offer's (1 to 9 digits).
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// The key and salt.
    pub key: KeyMaterial,
}

/// Why an `a=crypto` line cannot be used; the line is skipped (another of the peer's lines may still be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoAttrError {
    /// Not `<tag> <suite> <key-params> [<session-params>]`, or the tag is not 1 to 9 digits.
    #[error("malformed a=crypto line")]
    Malformed,
    /// A suite the relay does not terminate.
    #[error("unsupported crypto suite {0:?}")]
    Suite(String),
    /// A key method other than `inline`, or several keys.
    #[error("key parameters other than one inline key")]
    KeyParams,
    /// The key is not base64, or not the suite's length.
    #[error("the inline key is not base64 of {expected} bytes")]
    KeyLength {
        /// Bytes the suite needs.
        expected: usize,
    },
    /// A master key identifier: rtc-srtp does not put MKI fields in packets.
    #[error("MKI is not supported")]
    Mki,
    /// A session parameter that changes how packets are processed (`UNENCRYPTED_SRTP`, `KDR`, FEC, ...).
    #[error("unsupported session parameter {0:?}")]
    SessionParam(String),
}

impl CryptoAttr {
    /// Reads the value of an `a=crypto` attribute (what follows `a=crypto:`).
    pub fn parse(value: &str) -> Result<Self, CryptoAttrError> {
        let mut fields = value.split_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(CryptoAttrError::Malformed);
        };
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoAttrError::Malformed);
        }
        let tag = tag.parse().map_err(|_| CryptoAttrError::Malformed)?;
        let suite = Suite::from_name(suite).ok_or_else(|| CryptoAttrError::Suite(suite.to_owned()))?;
        for param in fields {
            // WSH (window size hint, §6.3.7) only sizes a replay window; anything else changes the packets.
            if !param.starts_with("WSH=") {
                return Err(CryptoAttrError::SessionParam(param.to_owned()));
            }
        }
        if key_params.contains(';') {
            return Err(CryptoAttrError::KeyParams);
        }
        let info = key_params.strip_prefix("inline:").ok_or(CryptoAttrError::KeyParams)?;
        let mut parts = info.split('|');
        let key = parts.next().unwrap_or("");
        for extra in parts {
            // `|lifetime` is digits or 2^digits; `|mki:length` has a colon.
            if extra.contains(':') {
                return Err(CryptoAttrError::Mki);
            }
            let digits = extra.strip_prefix("2^").unwrap_or(extra);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CryptoAttrError::Malformed);
            }
        }
        let expected = suite.material_len();
        let bytes = LENIENT.decode(key.as_bytes()).map_err(|_| CryptoAttrError::KeyLength { expected })?;
        if bytes.len() != expected {
            return Err(CryptoAttrError::KeyLength { expected });
        }
        Ok(Self { tag, suite, key: KeyMaterial(bytes) })
    }
}

impl fmt::Display for CryptoAttr {
    /// The attribute's value as we write it: `<tag> <suite> inline:<base64>`, no lifetime (the suite's maximum,
    /// RFC 4568 §6.1), no MKI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} inline:{}", self.tag, self.suite, self.key.to_base64())
    }
}

/// Where keys come from.
pub trait KeySource: Send + fmt::Debug {
    /// Fills `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), KeySourceError>;
}

/// The OS's CSPRNG could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the OS random source failed: {0}")]
pub struct KeySourceError(pub String);

/// The OS's CSPRNG (`getrandom(2)` through the `getrandom` crate): the only source of keys outside tests. It is
/// the one outside input this crate reads by itself, because a key must never come from anything a test (or an
/// attacker) could replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsKeys;

impl KeySource for OsKeys {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), KeySourceError> {
        getrandom::fill(out).map_err(|e| KeySourceError(e.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key source for tests: byte i of the n-th key is n + i (so golden SDP stays the same run after run).
    #[derive(Debug, Default)]
    pub(crate) struct CountingKeys(pub u8);

    impl KeySource for CountingKeys {
        fn fill(&mut self, out: &mut [u8]) -> Result<(), KeySourceError> {
            self.0 = self.0.wrapping_add(1);
            for (i, b) in out.iter_mut().enumerate() {
                *b = self.0.wrapping_add(i as u8);
            }
            Ok(())
        }
    }

    // RFC 4568 §9.1's example key (30 bytes).
    const KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    #[test]
    fn rfc_4568_example_parses_and_prints_back_without_lifetime() {
        let a = CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")).unwrap();
        assert_eq!((a.tag, a.suite, a.key.bytes().len()), (1, Suite::AesCm128HmacSha1_80, 30));
        assert_eq!(a.to_string(), format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"));
        let b = CryptoAttr::parse(&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{KEY} WSH=64")).unwrap();
        assert_eq!((b.tag, b.suite), (7, Suite::AesCm128HmacSha1_32));
    }

    #[test]
    fn each_suite_takes_keys_of_its_own_length_only() {
        for suite in Suite::ALL {
            let key = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
            let line = format!("3 {suite} inline:{}", key.to_base64());
            assert_eq!(CryptoAttr::parse(&line).unwrap().key, key, "{line}");
            let unpadded = line.trim_end_matches('=');
            assert_eq!(CryptoAttr::parse(unpadded).unwrap().key, key, "padding is optional: {unpadded}");
            let short = format!("3 {suite} inline:{}", KeyMaterial(vec![1; suite.material_len() - 1]).to_base64());
            assert_eq!(
                CryptoAttr::parse(&short),
                Err(CryptoAttrError::KeyLength { expected: suite.material_len() }),
                "{short}"
            );
        }
        assert_eq!(Suite::AeadAes128Gcm.material_len(), 28);
        assert_eq!(Suite::AesCm256HmacSha1_80.material_len(), 46);
    }

    #[test]
    fn lines_we_cannot_use_say_why() {
        use CryptoAttrError::*;
        for (line, why) in [
            ("1 AES_CM_128_HMAC_SHA1_80", Malformed),
            ("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}", Malformed),
            ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", Malformed),
            ("1 F8_128_HMAC_SHA1_80 inline:{KEY}", Suite("F8_128_HMAC_SHA1_80".into())),
            ("1 aes_cm_128_hmac_sha1_80 inline:{KEY}", Suite("aes_cm_128_hmac_sha1_80".into())),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4", Mki),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:32", Mki),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x", Malformed),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}", KeyParams),
            ("1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key", KeyParams),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP", SessionParam("UNENCRYPTED_SRTP".into())),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} KDR=1", SessionParam("KDR=1".into())),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", KeyLength { expected: 30 }),
        ] {
            let line = line.replace("{KEY}", KEY);
            assert_eq!(CryptoAttr::parse(&line), Err(why), "{line}");
        }
    }

    #[test]
    fn keys_are_fresh_and_never_printed() {
        let a = KeyMaterial::generate(Suite::AesCm128HmacSha1_80, &mut OsKeys).unwrap();
        let b = KeyMaterial::generate(Suite::AesCm128HmacSha1_80, &mut OsKeys).unwrap();
        assert_ne!(a, b, "two draws from the CSPRNG");
        assert_eq!(format!("{a:?}"), "KeyMaterial(30 bytes)");
        let keys = SrtpKeys { suite: Suite::AeadAes128Gcm, ours: a.clone(), theirs: b };
        assert!(!format!("{keys:?}").contains(&a.to_base64()));
    }

    #[test]
    fn keys_and_suites_round_trip_through_json() {
        let keys = SrtpKeys {
            suite: Suite::AesCm256HmacSha1_32,
            ours: KeyMaterial::generate(Suite::AesCm256HmacSha1_32, &mut CountingKeys::default()).unwrap(),
            theirs: KeyMaterial(vec![7; 46]),
        };
        let json = serde_json::to_string(&keys).unwrap();
        assert!(json.contains("\"AES_256_CM_HMAC_SHA1_32\""), "{json}");
        assert_eq!(serde_json::from_str::<SrtpKeys>(&json).unwrap(), keys);
        assert!(serde_json::from_str::<Suite>("\"NULL_HMAC_SHA1_80\"").is_err());
    }

    #[test]
    fn modes_by_name() {
        for m in [SrtpMode::Off, SrtpMode::Optional, SrtpMode::Required] {
            assert_eq!(SrtpMode::from_name(m.name()), Some(m));
        }
        assert_eq!(SrtpMode::from_name("mandatory"), None);
        assert_eq!(SrtpMode::default(), SrtpMode::Off);
    }
}
