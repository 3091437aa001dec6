//! What an NG request asks of a call, read from its dictionary: the keys and flags that Kamailio's and OpenSIPS's
//! rtpengine modules send for anchoring (names as in rtpengine's `docs/ng_control_protocol.md`).
//!
//! A request that asks for something this relay does not do (transcoding, recording, DTMF injection, ICE
//! termination, RTCP demultiplexing, unknown flags) is refused as a whole with [`OptionError::Unsupported`], so
//! the caller gets an `error-reason` and never a call that is silently half of what it asked for. Unknown keys
//! are ignored, as rtpengine ignores them (clients add keys newer servers know).

use crate::bencode::Value;
use crate::sdes::SrtpMode;
use std::net::IpAddr;

/// Why a request's options cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// A key or value is of the wrong kind (a list where a string belongs, an address that does not parse).
    #[error("bad value for '{key}': {why}")]
    Bad {
        /// The dictionary key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A feature this relay does not do; the reply's `error-reason` names it.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// What an offer or answer asks for, beyond its SDP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `direction`: the logical interfaces of the message's sender and receiver, by name.
    pub direction: Option<[String; 2]>,
    /// `label`: the sender's label, shown by `query`.
    pub label: Option<String>,
    /// `received-from`: where the SIP message came from (address family dropped).
    pub received_from: Option<IpAddr>,
    /// `trust-address`: the SDP's addresses are used as they are. Without it rtpengine takes the SIP source
    /// when it knows it; here latching confirms or corrects the SDP address from the first packet either way.
    pub trust_address: bool,
    /// `SIP-source-address`: the same as leaving `trust-address` out.
    pub sip_source: bool,
    /// `transport-protocol` as an SRTP policy towards the receiver (`RTP/AVP` plain, `RTP/SAVP` SDES-SRTP).
    pub srtp_to: SrtpMode,
}

/// Flags accepted as they are: what they ask is what the relay always does (latching, strict source, symmetric
/// forwarding; `replace-*` are also accepted as flags, as Kamailio's module may send them so).
const ACCEPTED_FLAGS: &[&str] = &[
    "trust-address",
    "sip-source-address",
    "symmetric",
    "port-latching",
    "strict-source",
    "loop-protect",
    "replace-origin",
    "replace-session-connection",
    "no-redis-update",
];

/// Reads `dict`'s options. `Err` names the first thing refused.
pub fn parse(dict: &Value) -> Result<Options, OptionError> {
    let mut o = Options::default();
    for flag in strings(dict, "flags")? {
        match flag.as_str() {
            "trust-address" => o.trust_address = true,
            "sip-source-address" => o.sip_source = true,
            f if ACCEPTED_FLAGS.contains(&f) => {}
            "asymmetric" => {
                return unsupported("flag 'asymmetric' (this relay always latches and forwards symmetrically)")
            }
            "record-call" => return unsupported("call recording"),
            "always-transcode" | "transcode" | "t38" => return unsupported("transcoding"),
            "inject-dtmf" | "dtmf-inject" => return unsupported("DTMF injection"),
            other => return unsupported(&format!("flag '{other}'")),
        }
    }
    for r in strings(dict, "replace")? {
        if !matches!(r.as_str(), "origin" | "session-connection" | "session-name" | "sdp-version" | "username") {
            return unsupported(&format!("replace '{r}'"));
        }
    }
    let direction = strings(dict, "direction")?;
    match direction.len() {
        0 => {}
        2 => o.direction = Some([direction[0].clone(), direction[1].clone()]),
        n => return Err(OptionError::Bad { key: "direction", why: format!("{n} interfaces, expected 2") }),
    }
    if let Some(ice) = text(dict, "ICE")? {
        if !matches!(normalize(&ice).as_str(), "remove" | "default") {
            return unsupported(&format!("ICE={ice} (ICE is removed towards the peer, never terminated)"));
        }
    }
    if let Some(tp) = text(dict, "transport-protocol")? {
        o.srtp_to = match tp.as_str() {
            "RTP/AVP" => SrtpMode::Off,
            "RTP/SAVP" => SrtpMode::Required,
            other => return unsupported(&format!("transport-protocol {other}")),
        };
    }
    for m in strings(dict, "rtcp-mux")? {
        if !matches!(m.as_str(), "accept" | "offer") {
            return unsupported(&format!("rtcp-mux {m} (rtcp-mux is passed through as the peers offer it)"));
        }
    }
    for s in strings(dict, "SDES")? {
        if s != "off" {
            return unsupported(&format!("SDES {s}"));
        }
    }
    if let Some(r) = text(dict, "record-call")? {
        if normalize(&r) != "no" {
            return unsupported("call recording");
        }
    }
    if let Some(codec) = dict.get("codec") {
        let asks = |k: &str| codec.get(k).is_some_and(|v| matches!(v, Value::List(l) if !l.is_empty()));
        if ["transcode", "mask", "set", "accept", "consume"].iter().any(|k| asks(k)) {
            return unsupported("transcoding");
        }
        if asks("strip") || asks("offer") || asks("except") {
            return unsupported("codec manipulation");
        }
    }
    for key in ["T.38", "DTMF-security", "DTMF-delay", "frequency", "digit", "sdp-attr"] {
        if dict.get(key).is_some() {
            return unsupported(&format!("'{key}'"));
        }
    }
    o.label = text(dict, "label")?;
    if let Some(Value::List(rf)) = dict.get("received-from") {
        let addr = rf
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| OptionError::Bad { key: "received-from", why: "expected [family, address]".into() })?;
        o.received_from =
            Some(addr.parse().map_err(|_| OptionError::Bad { key: "received-from", why: format!("'{addr}'") })?);
    }
    Ok(o)
}

fn unsupported<T>(what: &str) -> Result<T, OptionError> {
    Err(OptionError::Unsupported(what.to_owned()))
}

/// rtpengine accepts `trust address`, `trust-address` and `Trust-Address` alike.
fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace([' ', '_'], "-")
}

/// A list of strings under `key` (a single string counts as a list of one; flags keep rtpengine's spelling
/// rules: case and separators do not matter).
fn strings(dict: &Value, key: &'static str) -> Result<Vec<String>, OptionError> {
    let norm = |s: &str| if key == "flags" { normalize(s) } else { s.trim().to_owned() };
    match dict.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Bytes(_)) => Ok(vec![norm(text(dict, key)?.unwrap_or_default().as_str())]),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| v.as_str().map(norm).ok_or_else(|| OptionError::Bad { key, why: "not a string".into() }))
            .collect(),
        Some(_) => Err(OptionError::Bad { key, why: "expected a list of strings".into() }),
    }
}

fn text(dict: &Value, key: &'static str) -> Result<Option<String>, OptionError> {
    match dict.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| OptionError::Bad { key, why: "expected a UTF-8 string".into() }),
    }
}

/// The string under `key`, for the call's identifiers (`call-id`, `from-tag`, ...).
pub fn required(dict: &Value, key: &'static str) -> Result<String, OptionError> {
    text(dict, key)?.filter(|s| !s.is_empty()).ok_or_else(|| OptionError::Bad { key, why: "missing".into() })
}

/// The same, when the key may be absent.
pub fn optional(dict: &Value, key: &'static str) -> Result<Option<String>, OptionError> {
    Ok(text(dict, key)?.filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: Vec<(&str, Value)>) -> Result<Options, OptionError> {
        parse(&Value::dict(pairs))
    }

    #[test]
    fn kamailio_anchoring_options_are_read() {
        let o = opts(vec![
            ("flags", Value::str_list(&["trust address", "SIP-source-address", "symmetric", "strict-source"])),
            ("replace", Value::str_list(&["origin", "session-connection"])),
            ("direction", Value::str_list(&["a", "b"])),
            ("ICE", Value::str("remove")),
            ("transport-protocol", Value::str("RTP/AVP")),
            ("rtcp-mux", Value::str_list(&["accept"])),
            ("SDES", Value::str_list(&["off"])),
            ("label", Value::str("caller")),
            ("received-from", Value::str_list(&["IP4", "198.18.1.10"])),
            ("via-branch", Value::str("z9hG4bK1")),
            ("record-call", Value::str("no")),
        ])
        .unwrap();
        assert!(o.trust_address && o.sip_source);
        assert_eq!(o.direction, Some(["a".into(), "b".into()]));
        assert_eq!(o.label.as_deref(), Some("caller"));
        assert_eq!(o.received_from, Some("198.18.1.10".parse().unwrap()));
        assert_eq!(o.srtp_to, SrtpMode::Off);
        assert_eq!(opts(vec![("transport-protocol", Value::str("RTP/SAVP"))]).unwrap().srtp_to, SrtpMode::Required);
        assert_eq!(opts(vec![]).unwrap(), Options::default());
    }

    #[test]
    fn what_the_relay_does_not_do_is_refused_by_name() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (vec![("flags", Value::str_list(&["record call"]))], "recording"),
            (vec![("record-call", Value::str("yes"))], "recording"),
            (vec![("flags", Value::str_list(&["asymmetric"]))], "asymmetric"),
            (vec![("flags", Value::str_list(&["always-transcode"]))], "transcoding"),
            (vec![("flags", Value::str_list(&["inject DTMF"]))], "DTMF"),
            (vec![("flags", Value::str_list(&["frobnicate"]))], "frobnicate"),
            (vec![("codec", Value::dict([("transcode", Value::str_list(&["opus"]))]))], "transcoding"),
            (vec![("codec", Value::dict([("strip", Value::str_list(&["all"]))]))], "codec"),
            (vec![("ICE", Value::str("force"))], "ICE=force"),
            (vec![("transport-protocol", Value::str("UDP/TLS/RTP/SAVPF"))], "transport-protocol"),
            (vec![("rtcp-mux", Value::str_list(&["demux"]))], "rtcp-mux demux"),
            (vec![("SDES", Value::str_list(&["no-AES_CM_128_HMAC_SHA1_32"]))], "SDES"),
            (vec![("T.38", Value::str_list(&["decode"]))], "T.38"),
            (vec![("replace", Value::str_list(&["zero-address"]))], "zero-address"),
        ];
        for (pairs, word) in cases {
            let err = opts(pairs.clone()).unwrap_err();
            assert!(matches!(err, OptionError::Unsupported(_)), "{pairs:?}: {err}");
            assert!(err.to_string().contains(word), "{err} should name {word}");
        }
    }

    #[test]
    fn wrong_kinds_are_bad_values_naming_the_key() {
        let e = opts(vec![("flags", Value::Int(3))]).unwrap_err();
        assert_eq!(e, OptionError::Bad { key: "flags", why: "expected a list of strings".into() });
        let e = opts(vec![("direction", Value::str_list(&["a"]))]).unwrap_err();
        assert!(matches!(e, OptionError::Bad { key: "direction", .. }), "{e}");
        let e = opts(vec![("received-from", Value::str_list(&["IP4", "nowhere"]))]).unwrap_err();
        assert!(matches!(e, OptionError::Bad { key: "received-from", .. }), "{e}");
        assert!(required(&Value::dict([]), "call-id").is_err());
    }
}
