//! One REGISTER, processed in the order of RFC 3261 §10.3: domain, authentication, the To AOR, Contacts and their
//! expiry, Call-ID/CSeq order, then the 200 listing every binding.
//!
//! Outbound (RFC 5626 §6, registrar side): a Contact with both `+sip.instance` and `reg-id` makes an outbound
//! binding, keyed by (AOR, instance, reg-id): a new flow with the same reg-id replaces the old binding, another
//! reg-id is kept beside it. A `reg-id` without an instance is ignored (§5.2: not an outbound registration). When
//! the REGISTER also says `Supported: outbound` and came over a connection (TCP, TLS, WS, WSS: where our
//! keep-alive answers run, CRLFCRLF and WebSocket pings), the 200 says `Require: outbound` and `Flow-Timer`. Over
//! UDP it does not: we answer no STUN keep-alives on SIP ports (§4.4.2), so the client would find its flow broken.
//! We are the edge proxy and the registrar in one, so no Path or flow token is involved: the binding holds the
//! flow itself ([`Binding::flow`]).

use super::{seconds_left, secs, Binding, BindingChange, FlowKey, Registrar};
use crate::msg::{Contacts, HeaderName, Request, Response};
use crate::policy::digest::{Algorithm, Credentials, NonceCheck};
use crate::transport::Peer;
use bytes::Bytes;
use std::time::Instant;

/// The option tag of SIP outbound (RFC 5626 §11.1).
pub const OUTBOUND: &str = "outbound";

/// The outcome of a REGISTER.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The answer (without a To tag: the endpoint adds one).
    pub response: Response,
    /// For the `sbc_registrar_registers_total{result}` counter: `ok`, `challenged`, `stale`, `forbidden`,
    /// `wrong_domain`, `interval_too_brief`, `bad_request`, `out_of_order`.
    pub result: &'static str,
    /// The bindings made, refreshed or removed.
    pub changes: Vec<BindingChange>,
    /// Credentials were presented and were wrong: an offence of the source (the edge guard counts it to a ban).
    pub wrong_credentials: Option<String>,
}

impl Registered {
    fn answer(req: &Request, status: u16, reason: &'static str, result: &'static str) -> Self {
        Self {
            response: Response::to_request(req, status, reason),
            result,
            changes: Vec::new(),
            wrong_credentials: None,
        }
    }
}

impl Registrar {
    /// Answers a REGISTER that came in on `flow`. `fresh_secret` makes a nonce secret the first time one is needed
    /// and no shared secret is configured (the endpoint passes its random source).
    pub fn handle_register(
        &mut self,
        now: Instant,
        flow: Peer,
        req: &Request,
        fresh_secret: impl FnOnce() -> String,
    ) -> Registered {
        let host_ok = req.uri.sip().is_some_and(|u| {
            let host = String::from_utf8_lossy(u.host);
            self.config.domains.is_empty() || self.config.domains.iter().any(|d| d.eq_ignore_ascii_case(&host))
        });
        if !host_ok {
            return Registered::answer(req, 404, "Not Found", "wrong_domain");
        }
        let creds = req.headers.get_all(&HeaderName::Authorization).find_map(|v| {
            Credentials::parse(&String::from_utf8_lossy(v)).ok().filter(|c| c.realm == self.config.realm)
        });
        let Some(creds) = creds else {
            return self.challenge(now, req, false, fresh_secret);
        };
        let now_secs = self.nonce_secs(now);
        match self.issuer(fresh_secret).check(&creds.nonce, now_secs) {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => return self.challenge(now, req, true, String::new),
            // Not ours (a restart without a shared secret): no offence, just a new challenge.
            NonceCheck::Invalid => return self.challenge(now, req, false, String::new),
        }
        let aor = req.headers.to().ok().and_then(|t| t.uri().user().map(|u| String::from_utf8_lossy(u).into_owned()));
        let user = self.config.user(&creds.username);
        let verified = user.is_some_and(|u| creds.verify("REGISTER", &u.password));
        // §10.3 step 6: the authenticated user may change the bindings of its own AOR only.
        if !verified || aor.as_deref() != Some(creds.username.as_str()) {
            let mut r = Registered::answer(req, 403, "Forbidden", "forbidden");
            r.wrong_credentials = Some(creds.username);
            return r;
        }
        self.update(now, flow, req, creds.username)
    }

    fn challenge(&mut self, now: Instant, req: &Request, stale: bool, fresh: impl FnOnce() -> String) -> Registered {
        let now_secs = self.nonce_secs(now);
        let realm = self.config.realm.clone();
        let value = self.issuer(fresh).challenge(&realm, Algorithm::Md5, now_secs, stale);
        let mut r = Registered::answer(req, 401, "Unauthorized", if stale { "stale" } else { "challenged" });
        r.response.headers.push(HeaderName::WwwAuthenticate, value);
        r
    }

    /// §10.3 steps 7 and 8, for an authenticated `user`.
    fn update(&mut self, now: Instant, flow: Peer, req: &Request, user: String) -> Registered {
        let Ok(contacts) = req.headers.contacts() else {
            return Registered::answer(req, 400, "Bad Contact", "bad_request");
        };
        let expires_header = match req.headers.get(&HeaderName::Expires) {
            None => None,
            Some(v) => match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) => Some(n.min(u64::from(u32::MAX)) as u32),
                None => return Registered::answer(req, 400, "Bad Expires", "bad_request"),
            },
        };
        let call_id = req.headers.get_bytes(&HeaderName::CallId).unwrap_or_default();
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let wanted: Vec<(Bytes, Option<Bytes>, Option<u32>, u32)> = match contacts {
            Contacts::Star => {
                // `*` removes every binding, and only with Expires: 0 (§10.2.2).
                if expires_header != Some(0) || req.headers.count(&HeaderName::Contact) != 1 {
                    return Registered::answer(req, 400, "Invalid Wildcard", "bad_request");
                }
                self.bindings(&user).iter().map(|b| (b.contact.clone(), b.instance.clone(), b.reg_id, 0)).collect()
            }
            Contacts::Addrs(addrs) => {
                let mut out = Vec::with_capacity(addrs.len());
                for a in addrs {
                    let param = a.param("expires").flatten();
                    let asked = match param.map(|p| std::str::from_utf8(p).ok().and_then(|s| s.parse::<u64>().ok())) {
                        Some(Some(n)) => Some(n.min(u64::from(u32::MAX)) as u32),
                        Some(None) => return Registered::answer(req, 400, "Bad Expires", "bad_request"),
                        None => expires_header,
                    };
                    let granted = asked.unwrap_or(self.config.default_expires);
                    if granted != 0 && granted < self.config.min_expires {
                        let mut r = Registered::answer(req, 423, "Interval Too Brief", "interval_too_brief");
                        r.response.headers.push(HeaderName::MinExpires, self.config.min_expires.to_string());
                        return r;
                    }
                    let instance = a.param("+sip.instance").flatten().map(Bytes::copy_from_slice);
                    let reg_id = match a.param("reg-id") {
                        None => None,
                        // §5.2: reg-id means nothing without an instance.
                        Some(_) if instance.is_none() => None,
                        Some(v) => match v.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok()) {
                            Some(n) if n > 0 => Some(n),
                            _ => return Registered::answer(req, 400, "Bad reg-id", "bad_request"),
                        },
                    };
                    let granted = granted.min(self.config.max_expires);
                    out.push((Bytes::copy_from_slice(a.uri_bytes()), instance, reg_id, granted));
                }
                out
            }
        };
        let list = self.bindings.entry(user.clone()).or_default();
        // §10.3 step 7: a request older than what made a binding is refused as a whole, before anything changes.
        let stale = wanted.iter().any(|(contact, instance, reg_id, _)| {
            list.iter().any(|b| same(b, contact, instance.as_ref(), *reg_id) && b.call_id == call_id && b.cseq >= cseq)
        });
        if stale {
            return Registered::answer(req, 500, "Out of Order", "out_of_order");
        }
        let mut changes = Vec::new();
        let mut outbound = false;
        for (contact, instance, reg_id, granted) in wanted {
            let flow_key = instance.clone().zip(reg_id).map(|(instance, reg_id)| FlowKey { instance, reg_id });
            let before = list.len();
            list.retain(|b| !same(b, &contact, instance.as_ref(), reg_id));
            if granted == 0 {
                if list.len() != before {
                    changes.push(BindingChange { user: user.clone(), binding: None, contact, flow_key });
                }
                continue;
            }
            if list.len() >= self.config.max_contacts.max(1) {
                let oldest = list.remove(0);
                changes.push(BindingChange::removal(&user, &oldest));
            }
            outbound |= flow_key.is_some();
            let b = Binding {
                contact: contact.clone(),
                instance,
                reg_id,
                flow,
                expires: now + secs(granted),
                call_id: call_id.clone(),
                cseq,
            };
            list.push(b.clone());
            changes.push(BindingChange { user: user.clone(), binding: Some(b), contact, flow_key });
        }
        let mut r = Registered::answer(req, 200, "OK", "ok");
        let supported =
            req.headers.list(&HeaderName::Supported).any(|t| t.trim_ascii().eq_ignore_ascii_case(b"outbound"));
        if outbound && supported && flow.conn.is_some() {
            r.response.headers.push(HeaderName::Require, OUTBOUND);
            r.response
                .headers
                .push(HeaderName::Other(Bytes::from_static(b"Flow-Timer")), self.config.flow_timer.to_string());
        }
        for b in self.bindings(&user) {
            let contact = format!("<{}>;expires={}", String::from_utf8_lossy(&b.contact), seconds_left(b, now));
            r.response.headers.push(HeaderName::Contact, contact);
        }
        self.bindings.retain(|_, l| !l.is_empty());
        r.changes = changes;
        r
    }
}

/// Whether binding `b` is the one a Contact names: for an outbound registration the same instance and reg-id
/// (RFC 5626 §6); otherwise, among the bindings that are not outbound, the same instance (RFC 5627 §3.1 in spirit)
/// or else the same URI (byte for byte: clients re-register the Contact they registered; §10.3's URI comparison is
/// not needed for that).
fn same(b: &Binding, contact: &Bytes, instance: Option<&Bytes>, reg_id: Option<u32>) -> bool {
    if reg_id.is_some() || b.reg_id.is_some() {
        return reg_id == b.reg_id && instance == b.instance.as_ref();
    }
    match (instance, &b.instance) {
        (Some(i), Some(bi)) => i == bi,
        _ => b.contact == *contact,
    }
}
