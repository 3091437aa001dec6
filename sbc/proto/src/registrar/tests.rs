//! The registrar alone, REGISTER by REGISTER, under simulated time.

use super::*;
use crate::msg::{parse_datagram, HeaderName, Message, Request, Response};
use crate::policy::digest::{Challenge, Client};
use crate::transport::Transport;
use std::net::SocketAddr;

mod outbound;

const US: ([u8; 4], u16) = ([198, 18, 1, 1], 5060);
const ALICE_NAT: ([u8; 4], u16) = ([198, 18, 1, 50], 40000);

fn registrar() -> Registrar {
    let config = RegistrarConfig {
        domains: vec!["sbc.example".into()],
        realm: "sbc.example".into(),
        users: vec![User { name: "1001".into(), password: Secret::new("pw1001") }],
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_contacts: 2,
        trunk: TrunkId(3),
        flow_timer: 270,
    };
    Registrar::new(Arc::new(config), NonceConfig::default())
}

fn flow() -> Peer {
    Peer { transport: Transport::Udp, local: SocketAddr::from(US), remote: SocketAddr::from(ALICE_NAT), conn: None }
}

/// A REGISTER of `user` with `contact` lines and extra headers.
fn register(user: &str, cseq: u32, contacts: &[&str], extra: &str) -> Request {
    let mut text = format!(
        "REGISTER sip:sbc.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{cseq}\r\n\
         From: <sip:{user}@sbc.example>;tag=a1\r\nTo: <sip:{user}@sbc.example>\r\nCall-ID: reg-1\r\n\
         CSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
    );
    for c in contacts {
        text.push_str(&format!("Contact: {c}\r\n"));
    }
    text.push_str(extra);
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse_datagram(Bytes::from(text)).expect("test REGISTER parses") {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn header(r: &Response, name: HeaderName) -> String {
    String::from_utf8_lossy(r.headers.get(&name).unwrap_or_default()).into_owned()
}

/// REGISTER, answer the 401 with `password`, return the second outcome.
fn register_with(
    reg: &mut Registrar,
    now: Instant,
    password: &str,
    cseq: u32,
    contacts: &[&str],
    extra: &str,
) -> Registered {
    register_on(reg, now, flow(), password, cseq, contacts, extra)
}

/// [`register_with`] over `flow`.
fn register_on(
    reg: &mut Registrar,
    now: Instant,
    flow: Peer,
    password: &str,
    cseq: u32,
    contacts: &[&str],
    extra: &str,
) -> Registered {
    let first = reg.handle_register(now, flow, &register("1001", cseq, contacts, extra), || "secret".into());
    assert_eq!((first.response.status, first.result), (401, "challenged"));
    let ch = Challenge::parse(&header(&first.response, HeaderName::WwwAuthenticate)).expect("our challenge parses");
    assert!(ch.qop_auth, "qop=auth offered");
    let mut client = Client::new(ch, "1001", Secret::new(password));
    let auth = format!("Authorization: {}\r\n", client.authorize("REGISTER", "sip:sbc.example", "cn1"));
    reg.handle_register(now, flow, &register("1001", cseq + 1, contacts, &format!("{extra}{auth}")), || {
        unreachable!("secret made once")
    })
}

#[test]
fn register_with_digest_binds_the_contact_to_the_flow_it_came_on() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let ok = register_with(&mut reg, t0, "pw1001", 1, &["<sip:1001@10.0.0.5:5060>"], "Expires: 300\r\n");
    assert_eq!((ok.response.status, ok.result), (200, "ok"));
    assert_eq!(header(&ok.response, HeaderName::Contact), "<sip:1001@10.0.0.5:5060>;expires=300");
    assert_eq!(reg.active(), 1);
    let Lookup::Bound(b) = reg.lookup("1001") else { panic!("1001 is registered") };
    assert_eq!(b.flow.remote, SocketAddr::from(ALICE_NAT), "calls go to the source address (NAT), not the Contact");
    assert_eq!(&b.contact[..], b"sip:1001@10.0.0.5:5060");
    assert_eq!(ok.changes.len(), 1);
    assert_eq!(reg.lookup("1002"), Lookup::Unknown);
}

#[test]
fn wrong_password_is_forbidden_and_names_the_user_for_the_edge_guard() {
    let mut reg = registrar();
    let r = register_with(&mut reg, Instant::now(), "guess", 1, &["<sip:1001@10.0.0.5>"], "");
    assert_eq!((r.response.status, r.result), (403, "forbidden"));
    assert_eq!(r.wrong_credentials.as_deref(), Some("1001"));
    assert_eq!(reg.active(), 0);
    assert_eq!(reg.lookup("1001"), Lookup::NotRegistered);
}

#[test]
fn an_expired_nonce_is_challenged_again_with_stale() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let first = reg.handle_register(t0, flow(), &register("1001", 1, &["<sip:1001@h>"], ""), || "s".into());
    let ch = Challenge::parse(&header(&first.response, HeaderName::WwwAuthenticate)).expect("parses");
    let mut client = Client::new(ch, "1001", Secret::new("pw1001"));
    let auth = format!("Authorization: {}\r\n", client.authorize("REGISTER", "sip:sbc.example", "c"));
    let later = t0 + Duration::from_secs(NONCE_LIFETIME_SECS + 10);
    let r = reg.handle_register(later, flow(), &register("1001", 2, &["<sip:1001@h>"], &auth), || "s".into());
    assert_eq!((r.response.status, r.result), (401, "stale"));
    assert!(header(&r.response, HeaderName::WwwAuthenticate).contains("stale=true"));
    assert!(r.wrong_credentials.is_none(), "a stale nonce is no offence");
}

#[test]
fn below_min_expires_gets_423_with_min_expires() {
    let mut reg = registrar();
    let r = register_with(&mut reg, Instant::now(), "pw1001", 1, &["<sip:1001@h>"], "Expires: 30\r\n");
    assert_eq!((r.response.status, r.result), (423, "interval_too_brief"));
    assert_eq!(header(&r.response, HeaderName::MinExpires), "60");
    assert_eq!(reg.active(), 0);
}

#[test]
fn expiry_is_capped_defaulted_and_bindings_lapse_on_their_own() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let r = register_with(&mut reg, t0, "pw1001", 1, &["<sip:1001@a>;expires=99999", "<sip:1001@b>"], "");
    assert_eq!(r.response.status, 200);
    let contacts: Vec<String> =
        r.response.headers.get_all(&HeaderName::Contact).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    assert_eq!(contacts, ["<sip:1001@a>;expires=3600", "<sip:1001@b>;expires=600"]);
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(600)));
    let gone = reg.handle_timeout(t0 + Duration::from_secs(600));
    assert_eq!(gone.len(), 1);
    assert!(gone[0].binding.is_none());
    assert_eq!(reg.active(), 1);
    assert!(reg.handle_timeout(t0 + Duration::from_secs(3600)).len() == 1);
    assert_eq!(reg.lookup("1001"), Lookup::NotRegistered);
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn refresh_keeps_one_binding_and_unregister_with_star_removes_all() {
    let mut reg = registrar();
    let t0 = Instant::now();
    register_with(&mut reg, t0, "pw1001", 1, &["<sip:1001@a>"], "Expires: 120\r\n");
    let r = register_with(&mut reg, t0 + Duration::from_secs(60), "pw1001", 3, &["<sip:1001@a>"], "Expires: 120\r\n");
    assert_eq!(r.response.status, 200);
    assert_eq!(reg.active(), 1, "a refresh replaces, it does not add");
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(180)));
    let r = register_with(&mut reg, t0 + Duration::from_secs(70), "pw1001", 5, &["*"], "Expires: 0\r\n");
    assert_eq!((r.response.status, r.result), (200, "ok"));
    assert_eq!(reg.active(), 0);
    assert_eq!(r.changes.len(), 1);
    assert!(r.response.headers.get(&HeaderName::Contact).is_none(), "no bindings left to list");
}

#[test]
fn star_without_expires_zero_is_a_bad_request() {
    let mut reg = registrar();
    let r = register_with(&mut reg, Instant::now(), "pw1001", 1, &["*"], "Expires: 60\r\n");
    assert_eq!((r.response.status, r.result), (400, "bad_request"));
}

#[test]
fn one_contact_removed_by_expires_zero_and_older_cseq_refused() {
    let mut reg = registrar();
    let t0 = Instant::now();
    register_with(&mut reg, t0, "pw1001", 10, &["<sip:1001@a>", "<sip:1001@b>"], "");
    assert_eq!(reg.active(), 2);
    let late = register_with(&mut reg, t0, "pw1001", 4, &["<sip:1001@a>;expires=0"], "");
    assert_eq!((late.response.status, late.result), (500, "out_of_order"));
    let r = register_with(&mut reg, t0, "pw1001", 20, &["<sip:1001@a>;expires=0"], "");
    assert_eq!(r.response.status, 200);
    assert_eq!(reg.bindings("1001").len(), 1);
    assert_eq!(&reg.bindings("1001")[0].contact[..], b"sip:1001@b");
}

#[test]
fn beyond_max_contacts_the_oldest_binding_makes_room() {
    let mut reg = registrar();
    let t0 = Instant::now();
    register_with(&mut reg, t0, "pw1001", 1, &["<sip:1001@a>", "<sip:1001@b>"], "");
    let r = register_with(&mut reg, t0, "pw1001", 3, &["<sip:1001@c>"], "");
    assert_eq!(r.response.status, 200);
    let left: Vec<&[u8]> = reg.bindings("1001").iter().map(|b| &b.contact[..]).collect();
    assert_eq!(left, [&b"sip:1001@b"[..], b"sip:1001@c"]);
}

#[test]
fn same_instance_replaces_its_binding_and_a_closed_flow_takes_its_bindings() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let inst = "+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"";
    let c1 = format!("<sip:x1@df7jal23ls0d.invalid;transport=ws>;{inst};reg-id=1");
    let c2 = format!("<sip:x2@df7jal23ls0d.invalid;transport=ws>;{inst};reg-id=1");
    let ws = Peer { transport: Transport::Ws, conn: Some(ConnId(9)), ..flow() };
    // The two REGISTERs come over a WebSocket connection: the binding holds that connection.
    for (cseq, c) in [(1, &c1), (3, &c2)] {
        let first = reg.handle_register(t0, ws, &register("1001", cseq, &[c], ""), || "s".into());
        let ch = Challenge::parse(&header(&first.response, HeaderName::WwwAuthenticate)).expect("parses");
        let auth = Client::new(ch, "1001", Secret::new("pw1001")).authorize("REGISTER", "sip:sbc.example", "c");
        let ok = reg.handle_register(
            t0,
            ws,
            &register("1001", cseq + 1, &[c], &format!("Authorization: {auth}\r\n")),
            || "s".into(),
        );
        assert_eq!(ok.response.status, 200);
    }
    assert_eq!(reg.active(), 1, "the same instance re-registered a new Contact: one binding");
    let Lookup::Bound(b) = reg.lookup("1001") else { panic!("bound") };
    assert_eq!((&b.contact[..], b.flow.conn), (&b"sip:x2@df7jal23ls0d.invalid;transport=ws"[..], Some(ConnId(9))));
    assert!(reg.flow_closed(ConnId(8)).is_empty());
    assert_eq!(reg.flow_closed(ConnId(9)).len(), 1);
    assert_eq!(reg.lookup("1001"), Lookup::NotRegistered);
}

#[test]
fn register_for_another_domain_or_another_users_aor_is_refused() {
    let mut reg = registrar();
    let mut req = register("1001", 1, &["<sip:1001@a>"], "");
    req.uri = crate::msg::Uri::parse(Bytes::from_static(b"sip:elsewhere.example")).expect("uri");
    let r = reg.handle_register(Instant::now(), flow(), &req, || "s".into());
    assert_eq!((r.response.status, r.result), (404, "wrong_domain"));
    // 1001's credentials for 1002's AOR.
    let first = reg.handle_register(Instant::now(), flow(), &register("1002", 1, &["<sip:1002@a>"], ""), || "s".into());
    let ch = Challenge::parse(&header(&first.response, HeaderName::WwwAuthenticate)).expect("parses");
    let auth = Client::new(ch, "1001", Secret::new("pw1001")).authorize("REGISTER", "sip:sbc.example", "c");
    let r = reg.handle_register(
        Instant::now(),
        flow(),
        &register("1002", 2, &["<sip:1002@a>"], &format!("Authorization: {auth}\r\n")),
        || "s".into(),
    );
    assert_eq!((r.response.status, r.result), (403, "forbidden"));
}

#[test]
fn a_standby_applies_the_actives_bindings_without_its_connection() {
    let mut active = registrar();
    let t0 = Instant::now();
    register_with(&mut active, t0, "pw1001", 1, &["<sip:1001@a>"], "");
    let mut standby = registrar();
    for c in active.snapshot() {
        standby.apply(c);
    }
    let Lookup::Bound(b) = standby.lookup("1001") else { panic!("replicated") };
    assert_eq!(b.flow.remote, SocketAddr::from(ALICE_NAT));
    standby.apply(BindingChange {
        user: "1001".into(),
        binding: None,
        contact: Bytes::from_static(b"sip:1001@a"),
        flow_key: None,
    });
    assert_eq!(standby.active(), 0);
}

#[test]
fn a_binding_crosses_as_a_record_and_back_with_its_time_left() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let ok = register_with(&mut reg, t0, "pw1001", 1, &["<sip:1001@a>"], "Expires: 300\r\n");
    let record = ok.changes[0].record(t0 + Duration::from_secs(100));
    let crate::ha::Record::Binding(r) = &record else { panic!("a binding record") };
    assert_eq!((r.expires_in_ms, r.transport.as_str()), (Some(200_000), "udp"));
    let t1 = t0 + Duration::from_secs(5000);
    let back = BindingChange::from_record(r, t1).expect("known transport");
    assert_eq!(back.binding.as_ref().map(|b| b.expires), Some(t1 + Duration::from_secs(200)));
    assert_eq!(back.binding.as_ref().map(|b| b.flow.remote), Some(SocketAddr::from(ALICE_NAT)));
}
