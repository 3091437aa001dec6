//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 8760 for SHA-256, RFC 7616 for the HTTP side):
//! answering a carrier's 401/407 challenge, and challenging a customer trunk.
//!
//! Passwords are held in [`Secret`], whose `Debug` prints nothing, so they cannot reach a log by accident.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::fmt;

/// A password or shared secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from the environment or a file.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5, the RFC 3261 default.
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    fn hash(self, parts: &[&[u8]]) -> String {
        match self {
            Self::Md5 => hash_with::<Md5>(parts),
            Self::Sha256 => hash_with::<Sha256>(parts),
        }
    }

    fn token(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }
}

/// Lower-case hex of `H(p1:p2:…)` (RFC 7616 §3.4.1 joins the parts with colons).
fn hash_with<D: Digest>(parts: &[&[u8]]) -> String {
    let mut h = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a challenge or credentials could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The scheme is not Digest.
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// A required parameter is missing.
    #[error("digest parameter `{0}` missing")]
    Missing(&'static str),
    /// The algorithm is neither MD5 nor SHA-256 (the `-sess` variants are not offered by SIP carriers in practice).
    #[error("unsupported digest algorithm")]
    Algorithm,
    /// The challenge offers qop values but not `auth` (auth-int is not supported).
    #[error("challenge requires a qop other than auth")]
    Qop,
    /// The parameter list does not parse.
    #[error("malformed digest parameters")]
    Syntax,
}

/// A parsed `WWW-Authenticate`/`Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Realm.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque, echoed back.
    pub opaque: Option<String>,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Whether qop=auth is offered (then we must use it, with cnonce and nc).
    pub qop_auth: bool,
    /// `stale=true`: our credentials were right but the nonce expired; retry without asking anyone.
    pub stale: bool,
}

/// Splits `Digest k=v, k="v"` into pairs, honouring quoted strings with commas inside.
fn params(value: &str) -> Result<Vec<(String, String)>, DigestError> {
    let rest = value.trim_start();
    let (scheme, rest) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return Ok(out);
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Syntax);
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => val.push(chars.next().ok_or(DigestError::Syntax)?),
                    Some(c) => val.push(c),
                    None => return Err(DigestError::Syntax),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key.to_ascii_lowercase(), val));
    }
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

fn parse_algorithm(a: Option<&str>) -> Result<Algorithm, DigestError> {
    match a {
        None => Ok(Algorithm::Md5),
        Some(a) if a.eq_ignore_ascii_case("MD5") => Ok(Algorithm::Md5),
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => Ok(Algorithm::Sha256),
        Some(_) => Err(DigestError::Algorithm),
    }
}

impl Challenge {
    /// Parses a challenge header value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let p = params(value)?;
        let qop_auth = match get(&p, "qop") {
            None => false,
            Some(q) if q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => true,
            Some(_) => return Err(DigestError::Qop),
        };
        Ok(Self {
            realm: get(&p, "realm").ok_or(DigestError::Missing("realm"))?.to_owned(),
            nonce: get(&p, "nonce").ok_or(DigestError::Missing("nonce"))?.to_owned(),
            opaque: get(&p, "opaque").map(str::to_owned),
            algorithm: parse_algorithm(get(&p, "algorithm"))?,
            qop_auth,
            stale: get(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// Our answer to one challenge, kept so that later requests to the same realm reuse the nonce with an increasing
/// nonce count (RFC 7616 §3.4) instead of taking a 401/407 round trip each time.
#[derive(Debug, Clone)]
pub struct Client {
    challenge: Challenge,
    username: String,
    password: Secret,
    nc: u32,
}

impl Client {
    /// Prepares to answer `challenge` as `username`.
    pub fn new(challenge: Challenge, username: impl Into<String>, password: Secret) -> Self {
        Self { challenge, username: username.into(), password, nc: 0 }
    }

    /// The realm these credentials are for.
    pub fn realm(&self) -> &str {
        &self.challenge.realm
    }

    /// The `Authorization`/`Proxy-Authorization` value for a request with `method` and Request-URI `uri`.
    /// `cnonce` comes from the caller's random source (this crate reads no randomness itself).
    pub fn authorize(&mut self, method: &str, uri: &str, cnonce: &str) -> String {
        let c = &self.challenge;
        let alg = c.algorithm;
        let ha1 = alg.hash(&[self.username.as_bytes(), c.realm.as_bytes(), self.password.expose().as_bytes()]);
        let ha2 = alg.hash(&[method.as_bytes(), uri.as_bytes()]);
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}",
            self.username,
            c.realm,
            c.nonce,
            uri,
            alg.token()
        );
        let response = if c.qop_auth {
            self.nc += 1;
            let nc = format!("{:08x}", self.nc);
            v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
            alg.hash(&[ha1.as_bytes(), c.nonce.as_bytes(), nc.as_bytes(), cnonce.as_bytes(), b"auth", ha2.as_bytes()])
        } else {
            alg.hash(&[ha1.as_bytes(), c.nonce.as_bytes(), ha2.as_bytes()])
        };
        v.push_str(&format!(", response=\"{response}\""));
        if let Some(o) = &c.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }
}

/// Credentials presented by a client in `Authorization`/`Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Realm.
    pub realm: String,
    /// The nonce the client answers.
    pub nonce: String,
    /// The digest-uri.
    pub uri: String,
    /// The response hash.
    pub response: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// `(nc, cnonce)` when qop=auth was used.
    pub qop: Option<(String, String)>,
}

impl Credentials {
    /// Parses an authorization header value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let p = params(value)?;
        let field = |k: &'static str| get(&p, k).map(str::to_owned).ok_or(DigestError::Missing(k));
        let qop = match get(&p, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((field("nc")?, field("cnonce")?)),
            Some(_) => return Err(DigestError::Qop),
        };
        Ok(Self {
            username: field("username")?,
            realm: field("realm")?,
            nonce: field("nonce")?,
            uri: field("uri")?,
            response: field("response")?,
            algorithm: parse_algorithm(get(&p, "algorithm"))?,
            qop,
        })
    }

    /// Whether the response matches `password` for a request with `method`. Compares in constant time so the
    /// timing reveals nothing about how much of the hash was right.
    pub fn verify(&self, method: &str, password: &Secret) -> bool {
        let alg = self.algorithm;
        let ha1 = alg.hash(&[self.username.as_bytes(), self.realm.as_bytes(), password.expose().as_bytes()]);
        let ha2 = alg.hash(&[method.as_bytes(), self.uri.as_bytes()]);
        let want = match &self.qop {
            Some((nc, cnonce)) => alg.hash(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ]),
            None => alg.hash(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        };
        let (a, b) = (want.as_bytes(), self.response.to_ascii_lowercase().into_bytes());
        a.len() == b.len() && a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Issues and checks nonces without storing them: a nonce is `timestamp:H(secret:timestamp)`, so any nonce we
/// issued in the last `lifetime` can be verified statelessly (and survives a failover to the standby, which shares
/// the secret).
#[derive(Debug, Clone)]
pub struct NonceIssuer {
    secret: Secret,
    lifetime_secs: u64,
}

/// How a core makes the nonces of its digest challenges.
#[derive(Debug, Clone, Default)]
pub struct NonceConfig {
    /// The secret nonces are made with. A hot-standby pair shares one (`[ha] secret_env` / `secret_file`), so a
    /// nonce issued by one box verifies on the other. `None`: a random secret of the core's own, made at its first
    /// challenge, so its nonces die with the process or a takeover (the client is challenged again).
    pub secret: Option<Secret>,
    /// Unix time in seconds at an instant, given by the driver (the core reads no clock): nonces then carry
    /// wall-clock seconds and two boxes agree on a nonce's age. `None`: seconds since the core's first challenge,
    /// which only that core can read.
    pub unix_at: Option<(std::time::Instant, u64)>,
}

impl NonceConfig {
    /// Seconds on the nonce clock at `now`; `epoch` is the core's first challenge, used without `unix_at`.
    pub fn secs(&self, now: std::time::Instant, epoch: std::time::Instant) -> u64 {
        match self.unix_at {
            Some((at, unix)) if now >= at => unix + now.duration_since(at).as_secs(),
            Some((at, unix)) => unix.saturating_sub(at.duration_since(now).as_secs()),
            // + 1: a nonce issued in the first second is not 0 (never "from before the epoch").
            None => now.saturating_duration_since(epoch).as_secs() + 1,
        }
    }
}

/// Whether a nonce is ours and fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us and still valid.
    Fresh,
    /// Issued by us but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours.
    Invalid,
}

impl NonceIssuer {
    /// An issuer with a secret and a nonce lifetime.
    pub fn new(secret: Secret, lifetime_secs: u64) -> Self {
        Self { secret, lifetime_secs }
    }

    /// A nonce for `now` (seconds since an epoch the caller chooses; the driver passes Unix time).
    pub fn issue(&self, now_secs: u64) -> String {
        let ts = now_secs.to_string();
        format!("{ts}:{}", Algorithm::Sha256.hash(&[self.secret.expose().as_bytes(), ts.as_bytes()]))
    }

    /// Checks a nonce presented at `now_secs`.
    pub fn check(&self, nonce: &str, now_secs: u64) -> NonceCheck {
        let Some((ts, _)) = nonce.split_once(':') else {
            return NonceCheck::Invalid;
        };
        let Ok(issued) = ts.parse::<u64>() else {
            return NonceCheck::Invalid;
        };
        if self.issue(issued) != nonce {
            return NonceCheck::Invalid;
        }
        if now_secs.saturating_sub(issued) > self.lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    /// A challenge header value for `realm`.
    pub fn challenge(&self, realm: &str, algorithm: Algorithm, now_secs: u64, stale: bool) -> String {
        format!(
            "Digest realm=\"{realm}\", nonce=\"{}\", algorithm={}, qop=\"auth\"{}",
            self.issue(now_secs),
            algorithm.token(),
            if stale { ", stale=true" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_without_qop_matches_a_known_answer() {
        // RFC 2617 §3.5 uses qop=auth; this is the RFC 2069-style computation, its expected value computed
        // independently (Python hashlib): MD5(MD5("Mufasa:testrealm@host.com:Circle Of Life"):nonce:MD5("GET:/dir/index.html")).
        let c = Challenge::parse("Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"")
            .expect("challenge");
        let mut client = Client::new(c, "Mufasa", Secret::new("Circle Of Life"));
        let v = client.authorize("GET", "/dir/index.html", "unused");
        assert!(v.contains("response=\"670fd8c2df070c60b045671b8b24ff02\""), "{v}");
    }

    #[test]
    fn rfc_2617_qop_auth_example() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("challenge");
        let mut client = Client::new(c, "Mufasa", Secret::new("Circle Of Life"));
        let v = client.authorize("GET", "/dir/index.html", "0a4f113b");
        assert!(v.contains("nc=00000001"), "{v}");
        assert!(v.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{v}");
        assert!(v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""), "{v}");
        assert!(client.authorize("GET", "/dir/index.html", "x").contains("nc=00000002"), "nonce reused with nc+1");
    }

    #[test]
    fn server_verifies_sha256_and_rejects_wrong_password() {
        let issuer = NonceIssuer::new(Secret::new("k"), 300);
        let ch = Challenge::parse(&issuer.challenge("sbc", Algorithm::Sha256, 1000, false)).expect("ours parses");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let mut client = Client::new(ch, "pbx", Secret::new("pw"));
        let creds = Credentials::parse(&client.authorize("INVITE", "sip:+4930@sbc", "abc")).expect("parses");
        assert!(creds.verify("INVITE", &Secret::new("pw")));
        assert!(!creds.verify("INVITE", &Secret::new("wrong")));
        assert!(!creds.verify("BYE", &Secret::new("pw")));
        assert_eq!(issuer.check(&creds.nonce, 1100), NonceCheck::Fresh);
        assert_eq!(issuer.check(&creds.nonce, 1400), NonceCheck::Stale);
        assert_eq!(issuer.check("1000:forged", 1000), NonceCheck::Invalid);
    }

    #[test]
    fn a_nonce_issued_by_one_box_of_a_pair_verifies_on_the_other_only_with_the_shared_secret() {
        let (t1, t2) = (std::time::Instant::now(), std::time::Instant::now() + std::time::Duration::from_secs(77));
        // Both boxes give the same Unix time for their own (unrelated) instants: wall clocks agree.
        let pair =
            |at, secret: &str| NonceConfig { secret: Some(Secret::new(secret)), unix_at: Some((at, 1_700_000_000)) };
        let (c1, c2) = (pair(t1, "shared"), pair(t2, "shared"));
        let issued = NonceIssuer::new(c1.secret.clone().unwrap(), 300)
            .issue(c1.secs(t1 + std::time::Duration::from_secs(10), t1));
        let other = NonceIssuer::new(c2.secret.clone().unwrap(), 300);
        assert_eq!(other.check(&issued, c2.secs(t2 + std::time::Duration::from_secs(40), t2)), NonceCheck::Fresh);
        assert_eq!(other.check(&issued, c2.secs(t2 + std::time::Duration::from_secs(400), t2)), NonceCheck::Stale);
        let stranger = NonceIssuer::new(Secret::new("another"), 300);
        assert_eq!(stranger.check(&issued, c2.secs(t2, t2)), NonceCheck::Invalid);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Client::new(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\"").expect("challenge"),
            "u",
            Secret::new("hunter2"),
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_challenges() {
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Err(DigestError::NotDigest));
        assert_eq!(Challenge::parse("Digest nonce=\"n\""), Err(DigestError::Missing("realm")));
        assert_eq!(Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512"), Err(DigestError::Algorithm));
        assert_eq!(Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""), Err(DigestError::Qop));
        assert_eq!(Challenge::parse("Digest realm=\"r"), Err(DigestError::Syntax));
    }
}
