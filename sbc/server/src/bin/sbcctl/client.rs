//! The HTTP side of `sbcctl`: one blocking request per command, JSON back, failures sorted into "the SBC said no"
//! and "nothing answers".

use std::time::Duration;

/// Why a command did not get its answer.
#[derive(Debug)]
pub enum Failure {
    /// Nothing answered at the API's address: why, in a few words.
    NoAnswer(String),
    /// The SBC answered with an error.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` of its JSON body (or the body itself).
        reason: String,
    },
}

/// The admin API at one base URL.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// `s` as one URL path segment: everything but unreserved characters percent-encoded (RFC 3986 §2.3).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`), sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(15)))
            .build();
        Self { base: base.trim_end_matches('/').to_owned(), token, agent: config.into() }
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{k}={}", segment(v)));
        }
        url
    }

    /// `GET path?query`.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<serde_json::Value, Failure> {
        let mut req = self.agent.get(self.url(path, query));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.call())
    }

    /// `POST path?query` without a body.
    pub fn post(&self, path: &str, query: &[(&str, &str)]) -> Result<serde_json::Value, Failure> {
        let mut req = self.agent.post(self.url(path, query));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.send_empty())
    }
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<serde_json::Value, Failure> {
    let mut resp = result.map_err(|e| Failure::NoAnswer(why(&e)))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().map_err(|e| Failure::NoAnswer(why(&e)))?;
    let value: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    if (200..300).contains(&status) {
        // /ha and a few others may answer plain text: shown as it came.
        return Ok(value.unwrap_or(serde_json::Value::String(body.trim_end().to_owned())));
    }
    let reason =
        value.as_ref().and_then(|v| v.get("error")).and_then(|e| e.as_str()).map(str::to_owned).unwrap_or_else(|| {
            match body.trim() {
                "" => "no reason given".to_owned(),
                b => b.lines().next().unwrap_or_default().to_owned(),
            }
        });
    Err(Failure::Refused { status, reason })
}

/// A transport failure in a few words: `connection refused`, `timed out`, …
fn why(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => io.to_string(),
        },
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        other => other.to_string(),
    }
}
