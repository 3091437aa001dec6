//! Registered users through the whole core: REGISTER with digest, calls from a trunk to a user's binding, calls from
//! a user (407) to a carrier, 404/480, and a binding replicated to a standby that then routes the call.

use super::*;
use crate::policy::digest::{Challenge, Client, Secret};
use crate::registrar::{RegistrarConfig, User};

const USER: &str = "198.18.1.50:40000";
const USERS: TrunkId = TrunkId(3);

fn users_world() -> World {
    users_world_in("sbc")
}

/// [`users_world`] with the registrar's digest realm `realm`.
fn users_world_in(realm: &str) -> World {
    world_configured(
        |t| t.push(Trunk::new("users")),
        |p| {
            p.routes = PrefixTable::from_entries([("100", vec![Candidate::new(USERS, 1)])]).expect("prefixes");
        },
        None,
        |c| {
            c.registrar = Some(Arc::new(RegistrarConfig {
                domains: vec!["198.18.1.1".into()],
                realm: realm.into(),
                users: vec![
                    User { name: "1001".into(), password: Secret::new("pw1001") },
                    User { name: "1002".into(), password: Secret::new("pw1002") },
                ],
                trunk: USERS,
                ..RegistrarConfig::default()
            }))
        },
    )
}

fn register_text(user: &str, cseq: u32, expires: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-r{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@198.18.1.1>;tag=u1\r\nTo: <sip:{user}@198.18.1.1>\r\n\
         Call-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@10.0.0.5:5060>\r\nExpires: {expires}\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

/// Registers `user` with `password` from [`USER`] with CSeq `cseq` and `cseq + 1`; returns the final status.
fn register(w: &mut World, user: &str, password: &str, expires: u32, cseq: u32) -> u16 {
    let sent = w.send(USER, SBC_A, register_text(user, cseq, expires, ""));
    let challenge = response(&sent, USER, 401);
    let ch = Challenge::parse(&rv(&challenge, HeaderName::WwwAuthenticate)).expect("our challenge parses");
    let auth = Client::new(ch, user, Secret::new(password)).authorize("REGISTER", "sip:198.18.1.1", "cn");
    let sent = w.send(USER, SBC_A, register_text(user, cseq + 1, expires, &format!("Authorization: {auth}\r\n")));
    match sent.as_slice() {
        [(to, Message::Response(r))] if *to == addr(USER) => r.status,
        other => panic!("one response to the user: {other:#?}"),
    }
}

fn invite_to(number: &str, call_id: &str) -> String {
    invite_from_a(call_id).replace("+493012345", number)
}

#[test]
fn a_trunk_call_to_a_registered_user_goes_to_its_flow_with_its_contact_as_request_uri() {
    let mut w = users_world();
    assert_eq!(register(&mut w, "1001", "pw1001", 300, 1), 200);
    assert_eq!(w.ep.user_bindings(), 1);
    let sent = w.send(A, SBC_A, invite_to("1001", "to-user"));
    response(&sent, A, 100);
    let inv = request(&sent, USER, Method::Invite);
    assert_eq!(inv.uri.as_bytes(), &b"sip:1001@10.0.0.5:5060"[..], "the Contact, sent to the NAT's address");
    assert_eq!(hv(&inv, HeaderName::To), "<sip:1001@198.18.1.1>", "To: the user's address-of-record");
    let sent = w.send(USER, SBC_A, answer(&inv, 200, "u9", USER, "v=0\r\n"));
    request(&sent, USER, Method::Ack);
    response(&sent, A, 200);
}

#[test]
fn a_call_to_an_unregistered_user_gets_480_and_to_an_unknown_one_404() {
    let mut w = users_world();
    let sent = w.send(A, SBC_A, invite_to("1002", "not-reg"));
    response(&sent, A, 480);
    let sent = w.send(A, SBC_A, invite_to("1009", "unknown"));
    response(&sent, A, 404);
    // Registered, then un-registered: 480 again.
    assert_eq!(register(&mut w, "1002", "pw1002", 300, 1), 200);
    assert_eq!(register(&mut w, "1002", "pw1002", 0, 3), 200);
    assert_eq!(w.ep.user_bindings(), 0);
    let sent = w.send(A, SBC_A, invite_to("1002", "unreg"));
    response(&sent, A, 480);
}

#[test]
fn a_user_call_is_challenged_then_routed_to_the_carrier_on_the_users_trunk() {
    let mut w = users_world();
    let from_user = |auth: &str, cseq: u32| {
        invite_from_a("from-user")
            .replace("CSeq: 1", &format!("CSeq: {cseq}"))
            .replace("branch=z9hG4bK-from-user", &format!("branch=z9hG4bK-fu{cseq}"))
            .replace("X-Internal: secret-topology\r\n", auth)
            .replace("198.18.1.10:5060;branch", "198.18.1.10:5060;rport;branch")
    };
    let sent = w.send(USER, SBC_A, from_user("", 1));
    let challenge = response(&sent, USER, 407);
    let ch = Challenge::parse(&rv(&challenge, HeaderName::ProxyAuthenticate)).expect("parses");
    let wrong =
        Client::new(ch.clone(), "1001", Secret::new("nope")).authorize("INVITE", "sip:+493012345@198.18.1.1", "c");
    let sent = w.send(USER, SBC_A, from_user(&format!("Proxy-Authorization: {wrong}\r\n"), 2));
    response(&sent, USER, 407);
    assert_eq!(w.offences.len(), 1, "a wrong password is an offence of its source");
    let good = Client::new(ch, "1001", Secret::new("pw1001")).authorize("INVITE", "sip:+493012345@198.18.1.1", "c");
    let sent = w.send(USER, SBC_A, from_user(&format!("Proxy-Authorization: {good}\r\n"), 3));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 486, "b1", B, ""));
    response(&sent, USER, 486);
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!(w.cdrs[0].trunk_in, "users");
}

#[test]
fn a_users_invite_is_challenged_in_the_registrars_realm_as_jssip_needs_once_registered() {
    // JsSIP drops the password after REGISTER and keeps the HA1 of the 401's realm: the 407 must use the same.
    let mut w = users_world_in("198.18.1.1");
    let invite = |auth: &str, cseq: u32| {
        invite_from_a("realm-user")
            .replace("CSeq: 1", &format!("CSeq: {cseq}"))
            .replace("branch=z9hG4bK-realm-user", &format!("branch=z9hG4bK-ru{cseq}"))
            .replace("X-Internal: secret-topology\r\n", auth)
            .replace("198.18.1.10:5060;branch", "198.18.1.10:5060;rport;branch")
    };
    let sent = w.send(USER, SBC_A, invite("", 1));
    let challenge = response(&sent, USER, 407);
    let ch = Challenge::parse(&rv(&challenge, HeaderName::ProxyAuthenticate)).expect("parses");
    assert_eq!(ch.realm, "198.18.1.1");
    let good = Client::new(ch, "1001", Secret::new("pw1001")).authorize("INVITE", "sip:+493012345@198.18.1.1", "c");
    let sent = w.send(USER, SBC_A, invite(&format!("Proxy-Authorization: {good}\r\n"), 2));
    request(&sent, B, Method::Invite);
}

#[test]
fn a_standby_given_the_actives_binding_routes_the_call_to_the_user() {
    let mut active = users_world();
    active.ep.set_replication(true);
    assert_eq!(register(&mut active, "1001", "pw1001", 300, 1), 200);
    let bindings: Vec<crate::ha::Record> =
        active.records.iter().filter(|r| matches!(r, crate::ha::Record::Binding(_))).cloned().collect();
    assert_eq!(bindings.len(), 1, "one binding record: {:?}", active.records);
    assert_eq!(active.ep.snapshot(active.now).len(), 1, "the snapshot carries the binding");
    let mut standby = users_world();
    for r in bindings {
        standby.ep.apply_record(standby.now, r);
    }
    assert_eq!(standby.ep.user_bindings(), 1);
    let sent = standby.send(A, SBC_A, invite_to("1001", "after-takeover"));
    let inv = request(&sent, USER, Method::Invite);
    assert_eq!(inv.uri.as_bytes(), &b"sip:1001@10.0.0.5:5060"[..]);
    // The binding lapses on the standby too.
    standby.advance(Duration::from_secs(301));
    assert_eq!(standby.ep.user_bindings(), 0);
}

#[test]
fn with_unknown_sources_dropped_users_still_register_and_their_calls_are_still_challenged() {
    let mut w = world_configured(
        |t| t.push(Trunk::new("users")),
        |p| p.unknown_source = UnknownSource::Drop,
        None,
        |c| {
            c.registrar = Some(Arc::new(RegistrarConfig {
                users: vec![User { name: "1001".into(), password: Secret::new("pw1001") }],
                trunk: USERS,
                ..RegistrarConfig::default()
            }))
        },
    );
    assert_eq!(register(&mut w, "1001", "pw1001", 300, 1), 200, "users are known by credentials, not addresses");
    let invite = invite_from_a("dropped-src").replace("198.18.1.10:5060;branch", "198.18.1.10:5060;rport;branch");
    let sent = w.send(USER, SBC_A, invite);
    response(&sent, USER, 407);
    // Anything else from that stranger is still dropped without an answer.
    let options = "OPTIONS sip:198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.50:40000;rport;branch=z9hG4bK-o1\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:x@198.18.1.50>;tag=o\r\nTo: <sip:198.18.1.1>\r\nCall-ID: opt-1\r\n\
                   CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert!(w.send(USER, SBC_A, options.to_owned()).is_empty(), "no answer to a stranger's OPTIONS");
}
