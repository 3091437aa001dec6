//! RFC 5626 §6 on the registrar side: outbound bindings keyed by (AOR, instance, reg-id), `Require: outbound` and
//! `Flow-Timer` in the 200, and the keys crossing to the standby.

use super::*;

/// JsSIP's Contact with outbound on: `;ob` in the URI, the instance and a reg-id.
fn contact(user_part: &str, reg_id: u32) -> String {
    format!(
        "<sip:{user_part}@df7jal23ls0d.invalid;transport=ws;ob>;\
         +sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id={reg_id};expires=600"
    )
}

fn ws(conn: u64, port: u16) -> Peer {
    Peer {
        transport: Transport::Wss,
        local: SocketAddr::from(([198, 18, 1, 1], 8443)),
        remote: SocketAddr::from(([198, 18, 1, 50], port)),
        conn: Some(ConnId(conn)),
    }
}

const SUPPORTED: &str = "Supported: path, outbound, gruu\r\n";

#[test]
fn outbound_register_over_a_websocket_gets_require_outbound_and_the_flow_timer() {
    let mut reg = registrar();
    let ok = register_on(&mut reg, Instant::now(), ws(7, 40001), "pw1001", 1, &[&contact("k3l", 1)], SUPPORTED);
    assert_eq!((ok.response.status, ok.result), (200, "ok"));
    assert_eq!(header(&ok.response, HeaderName::Require), OUTBOUND);
    assert_eq!(header(&ok.response, HeaderName::Other(Bytes::from_static(b"Flow-Timer"))), "270");
    let b = &reg.bindings("1001")[0];
    assert_eq!((b.reg_id, b.flow.conn), (Some(1), Some(ConnId(7))));
    assert_eq!(ok.changes[0].flow_key.as_ref().map(|k| k.reg_id), Some(1));
}

#[test]
fn without_supported_outbound_or_over_udp_the_200_requires_nothing() {
    for (flow, extra) in [(ws(7, 40001), ""), (flow(), SUPPORTED)] {
        let mut reg = registrar();
        let ok = register_on(&mut reg, Instant::now(), flow, "pw1001", 1, &[&contact("k3l", 1)], extra);
        assert_eq!(ok.response.status, 200, "{flow:?}");
        assert!(ok.response.headers.get(&HeaderName::Require).is_none(), "{flow:?} {extra:?}");
        assert!(ok.response.headers.get(&HeaderName::Other(Bytes::from_static(b"Flow-Timer"))).is_none());
        assert_eq!(reg.bindings("1001")[0].reg_id, Some(1), "still keyed as outbound");
    }
}

#[test]
fn a_new_flow_with_the_same_reg_id_replaces_the_binding_and_another_reg_id_is_kept_beside_it() {
    let mut reg = registrar();
    let t0 = Instant::now();
    register_on(&mut reg, t0, ws(1, 40001), "pw1001", 1, &[&contact("k3l", 1)], SUPPORTED);
    // The browser reconnected (new connection, new source port) and registers the same reg-id again.
    let again = register_on(&mut reg, t0, ws(2, 40002), "pw1001", 3, &[&contact("k3l", 1)], SUPPORTED);
    assert_eq!(again.response.status, 200);
    assert_eq!(reg.active(), 1, "same instance and reg-id: one binding");
    assert_eq!(reg.bindings("1001")[0].flow.conn, Some(ConnId(2)), "the new flow");
    // A second flow of the same instance (reg-id 2), with the same Contact URI: kept side by side.
    register_on(&mut reg, t0, ws(3, 40003), "pw1001", 5, &[&contact("k3l", 2)], SUPPORTED);
    let flows: Vec<_> = reg.bindings("1001").iter().map(|b| (b.reg_id, b.flow.conn)).collect();
    assert_eq!(flows, [(Some(1), Some(ConnId(2))), (Some(2), Some(ConnId(3)))]);
    // The first flow dies: only its binding goes; the user stays reachable over the other.
    assert!(reg.flow_closed(ConnId(1)).is_empty(), "the replaced flow holds nothing");
    let gone = reg.flow_closed(ConnId(2));
    assert_eq!(gone.iter().map(|c| c.flow_key.as_ref().map(|k| k.reg_id)).collect::<Vec<_>>(), [Some(1)]);
    let Lookup::Bound(b) = reg.lookup("1001") else { panic!("still bound over reg-id 2") };
    assert_eq!(b.flow.conn, Some(ConnId(3)));
    // Unregistering reg-id 2 (JsSIP's Contact with expires=0) removes it by its key.
    let c = contact("k3l", 2).replace("expires=600", "expires=0");
    let off = register_on(&mut reg, t0, ws(3, 40003), "pw1001", 7, &[&c], SUPPORTED);
    assert_eq!((off.response.status, off.changes.len(), reg.active()), (200, 1, 0));
}

#[test]
fn reg_id_without_an_instance_is_an_ordinary_registration() {
    let mut reg = registrar();
    let c = "<sip:k3l@df7jal23ls0d.invalid;transport=ws;ob>;reg-id=1";
    let ok = register_on(&mut reg, Instant::now(), ws(7, 40001), "pw1001", 1, &[c], SUPPORTED);
    assert_eq!(ok.response.status, 200);
    assert!(ok.response.headers.get(&HeaderName::Require).is_none(), "§5.2: not outbound");
    assert_eq!((reg.bindings("1001")[0].reg_id, ok.changes[0].flow_key.clone()), (None, None));
}

#[test]
fn a_reg_id_that_is_no_positive_number_is_a_bad_request() {
    let mut reg = registrar();
    let c = contact("k3l", 1).replace("reg-id=1", "reg-id=x");
    let r = register_on(&mut reg, Instant::now(), ws(7, 40001), "pw1001", 1, &[&c], SUPPORTED);
    assert_eq!((r.response.status, r.result, reg.active()), (400, "bad_request", 0));
}

#[test]
fn outbound_bindings_of_one_contact_cross_to_the_standby_by_their_reg_id() {
    let mut active = registrar();
    let t0 = Instant::now();
    register_on(&mut active, t0, ws(1, 40001), "pw1001", 1, &[&contact("k3l", 1)], SUPPORTED);
    register_on(&mut active, t0, ws(2, 40002), "pw1001", 3, &[&contact("k3l", 2)], SUPPORTED);
    let mut standby = registrar();
    for c in active.snapshot() {
        let record = c.record(t0);
        let crate::ha::Record::Binding(r) = &record else { panic!("a binding record") };
        assert_eq!(r.transport, "wss");
        standby.apply(BindingChange::from_record(r, t0).expect("wss decodes"));
    }
    assert_eq!(standby.active(), 2, "same Contact URI, two reg-ids: two bindings");
    // The removal of reg-id 1 (its flow closed on the active) removes that one only.
    let gone = active.flow_closed(ConnId(1));
    let record = gone[0].record(t0);
    let crate::ha::Record::Binding(r) = &record else { panic!("a binding record") };
    assert_eq!((r.reg_id, r.expires_in_ms), (Some(1), None));
    standby.apply(BindingChange::from_record(r, t0).expect("decodes"));
    let left: Vec<_> = standby.bindings("1001").iter().map(|b| (b.reg_id, b.flow.conn)).collect();
    assert_eq!(left, [(Some(2), None)]);
}

#[test]
fn a_format_3_binding_record_without_reg_id_still_decodes() {
    let old = r#"{"record":"binding","user":"1001","contact":"sip:1001@a","transport":"udp",
        "local":"198.18.1.1:5060","remote":"198.18.1.50:40000","expires_in_ms":1000,"call_id":"c","cseq":2}"#;
    let record: crate::ha::Record = serde_json::from_str(old).expect("an old record decodes");
    let crate::ha::Record::Binding(r) = &record else { panic!("a binding record: {record:?}") };
    let change = BindingChange::from_record(r, Instant::now()).expect("udp");
    assert_eq!((change.flow_key, change.binding.map(|b| b.reg_id)), (None, Some(None)));
}
