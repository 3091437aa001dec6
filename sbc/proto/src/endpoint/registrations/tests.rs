//! Registrations through the whole core under simulated time: REGISTERs out, answers in.

use super::super::{Config, Endpoint, Observation, Output};
use crate::msg::{parse_datagram, HeaderName, Message, Request};
use crate::policy::digest::{Credentials as Presented, Secret};
use crate::routing::{Credentials, Gateway, Plan, Registration, Trunk, TrunkId};
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGISTRAR: ([u8; 4], u16) = ([198, 18, 2, 10], 5060);
const OURS: ([u8; 4], u16) = ([198, 18, 2, 1], 5060);

fn registration(expires: u64) -> Registration {
    Registration {
        credentials: Credentials { username: "acct".into(), password: Secret::new("s3cret") },
        registrar: Gateway { transport: Transport::Udp, addr: SocketAddr::from(REGISTRAR) },
        domain: "carrier.example".into(),
        expires: Duration::from_secs(expires),
        contact_user: "sbc-acct".into(),
    }
}

fn endpoint(expires: u64) -> Endpoint {
    let mut trunk = Trunk::new("carrier");
    trunk.gateways = vec![Gateway { transport: Transport::Udp, addr: SocketAddr::from(REGISTRAR) }];
    trunk.register = Some(registration(expires));
    let config = Config {
        plan: Arc::new(Plan { trunks: vec![Trunk::new("pbx"), trunk], ..Plan::default() }),
        locals: vec![(Transport::Udp, SocketAddr::from(OURS))],
        ..Config::default()
    };
    Endpoint::new(config, 7)
}

const CARRIER: TrunkId = TrunkId(1);

/// The REGISTERs sent, and the observations, since the last call.
fn drain(ep: &mut Endpoint) -> (Vec<Request>, Vec<Observation>) {
    let (mut sent, mut seen) = (Vec::new(), Vec::new());
    while let Some(o) = ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => {
                assert_eq!(peer.remote, SocketAddr::from(REGISTRAR));
                match parse_datagram(bytes).expect("we send valid SIP") {
                    Message::Request(r) => sent.push(r),
                    Message::Response(r) => panic!("no responses here: {r:?}"),
                }
            }
            Output::Observe(ob) => seen.push(ob),
            other => panic!("unexpected output {other:?}"),
        }
    }
    (sent, seen)
}

fn header(r: &Request, name: HeaderName) -> String {
    String::from_utf8_lossy(r.headers.get(&name).unwrap_or_default()).into_owned()
}

/// The registrar's answer to `req`.
fn answer(ep: &mut Endpoint, now: Instant, req: &Request, status: &str, extra: &str) {
    let text = format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg1\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}\
         Content-Length: 0\r\n\r\n",
        header(req, HeaderName::Via),
        header(req, HeaderName::From),
        header(req, HeaderName::To),
        header(req, HeaderName::CallId),
        header(req, HeaderName::CSeq),
    );
    let peer = Peer {
        transport: Transport::Udp,
        local: SocketAddr::from(OURS),
        remote: SocketAddr::from(REGISTRAR),
        conn: None,
    };
    ep.handle_message(now, peer, Bytes::from(text));
}

fn one(sent: Vec<Request>) -> Request {
    assert_eq!(sent.len(), 1, "one REGISTER: {sent:?}");
    sent.into_iter().next().expect("one")
}

const CHALLENGE: &str = "WWW-Authenticate: Digest realm=\"carrier.example\", nonce=\"n0nce1\", qop=\"auth\"\r\n";

/// Registers through one challenge; returns the time of the 200 and the REGISTER it answered.
fn register(ep: &mut Endpoint, now: Instant, granted: u32) -> Request {
    ep.set_registering(now, true);
    let first = one(drain(ep).0);
    answer(ep, now, &first, "401 Unauthorized", CHALLENGE);
    let second = one(drain(ep).0);
    answer(ep, now, &second, "200 OK", &format!("Contact: <sip:sbc-acct@198.18.2.1:5060>;expires={granted}\r\n"));
    second
}

#[test]
fn registers_through_a_digest_challenge_and_refreshes_within_the_window() {
    let mut ep = endpoint(600);
    let t0 = Instant::now();
    ep.handle_timeout(t0);
    assert!(drain(&mut ep).0.is_empty(), "nothing before set_registering");
    assert!(!ep.calls.trunk_usable(CARRIER), "down until registered");

    ep.set_registering(t0, true);
    let first = one(drain(&mut ep).0);
    assert_eq!(first.uri.as_bytes().as_ref(), b"sip:carrier.example");
    assert_eq!(header(&first, HeaderName::To), "<sip:acct@carrier.example>");
    assert_eq!(header(&first, HeaderName::Contact), "<sip:sbc-acct@198.18.2.1:5060>");
    assert_eq!(header(&first, HeaderName::Expires), "600");
    assert!(first.headers.get(&HeaderName::Authorization).is_none());

    answer(&mut ep, t0, &first, "401 Unauthorized", CHALLENGE);
    let (sent, seen) = drain(&mut ep);
    let second = one(sent);
    assert!(seen.contains(&Observation::RegistrationResult { trunk: CARRIER, result: "challenged" }));
    assert_eq!(header(&second, HeaderName::CallId), header(&first, HeaderName::CallId));
    assert_eq!(header(&second, HeaderName::CSeq), "2 REGISTER");
    let auth = Presented::parse(&header(&second, HeaderName::Authorization)).expect("digest");
    assert_eq!((auth.username.as_str(), auth.realm.as_str()), ("acct", "carrier.example"));
    assert!(auth.verify("REGISTER", &Secret::new("s3cret")), "a right digest answer");

    // The registrar grants less than asked: its figure counts.
    answer(&mut ep, t0, &second, "200 OK", "Contact: <sip:sbc-acct@198.18.2.1:5060>;expires=100\r\n");
    let (sent, seen) = drain(&mut ep);
    assert!(sent.is_empty());
    assert!(seen.contains(&Observation::RegistrationState { trunk: CARRIER, registered: true }));
    assert!(ep.calls.trunk_usable(CARRIER));
    let refresh_at = ep.registrations.poll_timeout().expect("a refresh is due");
    let after = refresh_at - t0;
    assert!(after >= Duration::from_secs(50) && after <= Duration::from_secs(85), "refresh after {after:?} of 100 s");

    ep.handle_timeout(refresh_at - Duration::from_millis(1));
    assert!(drain(&mut ep).0.is_empty(), "not before its time");
    ep.handle_timeout(refresh_at);
    let refresh = one(drain(&mut ep).0);
    assert_eq!(header(&refresh, HeaderName::CSeq), "3 REGISTER");
    assert!(refresh.headers.get(&HeaderName::Authorization).is_some(), "the last challenge answered again");
    answer(&mut ep, refresh_at, &refresh, "200 OK", "Expires: 100\r\n");
    let (_, seen) = drain(&mut ep);
    assert!(seen.contains(&Observation::RegistrationResult { trunk: CARRIER, result: "ok" }));
    assert!(!seen.iter().any(|o| matches!(o, Observation::RegistrationState { .. })), "no change: {seen:?}");
}

#[test]
fn a_second_challenge_is_a_refusal_not_a_loop() {
    let mut ep = endpoint(600);
    let t0 = Instant::now();
    ep.set_registering(t0, true);
    let first = one(drain(&mut ep).0);
    answer(&mut ep, t0, &first, "401 Unauthorized", CHALLENGE);
    let second = one(drain(&mut ep).0);
    answer(&mut ep, t0, &second, "401 Unauthorized", CHALLENGE);
    let (sent, seen) = drain(&mut ep);
    assert!(sent.is_empty(), "no third REGISTER at once: {sent:?}");
    assert!(seen.contains(&Observation::RegistrationResult { trunk: CARRIER, result: "auth_failed" }));
    let retry = ep.registrations.poll_timeout().expect("a retry") - t0;
    assert!(retry >= Duration::from_secs(5) && retry <= Duration::from_secs(6), "{retry:?}");
}

#[test]
fn a_403_marks_the_trunk_down_and_retries_back_off_doubling() {
    let mut ep = endpoint(600);
    let t0 = Instant::now();
    register(&mut ep, t0, 600);
    drain(&mut ep);
    let mut now = ep.registrations.poll_timeout().expect("refresh");
    ep.handle_timeout(now);
    let refresh = one(drain(&mut ep).0);
    answer(&mut ep, now, &refresh, "403 Forbidden", "");
    let (_, seen) = drain(&mut ep);
    assert!(seen.contains(&Observation::RegistrationState { trunk: CARRIER, registered: false }));
    assert!(seen.contains(&Observation::RegistrationResult { trunk: CARRIER, result: "forbidden" }));
    assert!(!ep.calls.trunk_usable(CARRIER), "down while not registered");
    let mut waits = Vec::new();
    for _ in 0..8 {
        let next = ep.registrations.poll_timeout().expect("a retry");
        waits.push((next - now).as_secs_f64());
        now = next;
        ep.handle_timeout(now);
        let retry = one(drain(&mut ep).0);
        assert!(retry.headers.get(&HeaderName::Authorization).is_none(), "a fresh challenge after a refusal");
        answer(&mut ep, now, &retry, "503 Service Unavailable", "");
        drain(&mut ep);
    }
    // 5, 10, 20, 40, 80, 160, 300, 300 s, each up to a fifth more (fixed per trunk).
    let base = [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0];
    for (w, b) in waits.iter().zip(base) {
        assert!(*w >= b && *w <= b * 1.2, "waits {waits:?}");
    }
}

#[test]
fn a_clean_stop_unregisters_and_a_standby_stops_refreshing() {
    let mut ep = endpoint(600);
    let t0 = Instant::now();
    register(&mut ep, t0, 600);
    drain(&mut ep);
    ep.shutdown(t0 + Duration::from_secs(1));
    let (sent, seen) = drain(&mut ep);
    let unregister = one(sent);
    assert_eq!(header(&unregister, HeaderName::Expires), "0");
    assert!(seen.contains(&Observation::RegistrationState { trunk: CARRIER, registered: false }));
    assert!(ep.unregistering());
    answer(&mut ep, t0 + Duration::from_secs(1), &unregister, "200 OK", "");
    let (_, seen) = drain(&mut ep);
    assert!(!ep.unregistering());
    assert!(seen.contains(&Observation::RegistrationResult { trunk: CARRIER, result: "unregistered" }));

    let mut standby = endpoint(600);
    register(&mut standby, t0, 600);
    drain(&mut standby);
    standby.set_registering(t0 + Duration::from_secs(2), false);
    let (sent, seen) = drain(&mut standby);
    assert!(sent.is_empty(), "no un-REGISTER on demotion: the peer holds the binding");
    assert!(seen.contains(&Observation::RegistrationState { trunk: CARRIER, registered: false }));
    standby.handle_timeout(t0 + Duration::from_secs(600));
    assert!(drain(&mut standby).0.is_empty(), "no refresh on a standby");
    // Taking over again registers at once.
    standby.set_registering(t0 + Duration::from_secs(601), true);
    assert_eq!(header(&one(drain(&mut standby).0), HeaderName::Expires), "600");
}

#[test]
fn a_refresh_that_gets_no_answer_lets_the_binding_lapse() {
    let mut ep = endpoint(60);
    let t0 = Instant::now();
    register(&mut ep, t0, 60);
    drain(&mut ep);
    // The refresh goes out and nothing answers: at the granted expiry the trunk is down (before timer F).
    let mut now = t0;
    let end = t0 + Duration::from_secs(61);
    let mut down_at = None;
    while now < end {
        now = ep.registrations.poll_timeout().expect("timers").min(end);
        ep.handle_timeout(now);
        let (_, seen) = drain(&mut ep);
        if seen.contains(&Observation::RegistrationState { trunk: CARRIER, registered: false }) {
            down_at = Some(now);
            break;
        }
    }
    assert_eq!(down_at.map(|d| (d - t0).as_secs()), Some(60));
}

#[test]
fn five_hundred_trunks_refresh_spread_over_the_window() {
    let expiry = 600.0;
    let mut per_second = std::collections::HashMap::<u64, u32>::new();
    for i in 0..500 {
        let at = expiry
            * (super::REFRESH_FROM
                + (super::REFRESH_TO - super::REFRESH_FROM) * super::spread(&format!("carrier-{i}")));
        *per_second.entry(at as u64).or_default() += 1;
    }
    let busiest = per_second.values().max().copied().unwrap_or(0);
    // 500 refreshes over a 210 s window: 2.4 a second on average.
    assert!(busiest <= 10, "{busiest} trunks refresh in one second");
    assert!(per_second.len() >= 150, "only {} distinct seconds", per_second.len());
}

#[test]
fn a_register_that_could_not_leave_is_sent_again_as_a_new_transaction() {
    let mut ep = endpoint(600);
    let t0 = Instant::now();
    ep.set_registering(t0, true);
    let lost = one(drain(&mut ep).0);
    let t1 = t0 + Duration::from_millis(3);
    ep.resend_registrations(t1);
    let again = one(drain(&mut ep).0);
    assert_ne!(header(&again, HeaderName::Via), header(&lost, HeaderName::Via), "a new branch");
    assert_eq!(header(&again, HeaderName::CallId), header(&lost, HeaderName::CallId));
    assert_eq!(header(&again, HeaderName::CSeq), "2 REGISTER");
    // A late answer to the abandoned one changes nothing; the new one goes on through its challenge.
    answer(&mut ep, t1, &lost, "401 Unauthorized", CHALLENGE);
    assert!(drain(&mut ep).0.is_empty());
    answer(&mut ep, t1, &again, "401 Unauthorized", CHALLENGE);
    let authorized = one(drain(&mut ep).0);
    answer(&mut ep, t1, &authorized, "200 OK", "Expires: 600\r\n");
    assert!(drain(&mut ep).1.contains(&Observation::RegistrationState { trunk: CARRIER, registered: true }));
    // Nothing is resent once registered.
    ep.resend_registrations(t1);
    assert!(drain(&mut ep).0.is_empty());
}
