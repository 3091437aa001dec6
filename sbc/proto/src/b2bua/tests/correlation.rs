//! The correlation id of captures: leg A's Call-ID on the messages of both legs.

use super::*;

fn correlation(w: &World, m: &Message) -> Option<Bytes> {
    let bytes = match m {
        Message::Request(r) => r.to_bytes(),
        Message::Response(r) => r.to_bytes(),
    };
    w.ep.correlation(&bytes).map(|c| c.id().clone())
}

fn correlation_of(w: &World, raw: String) -> Option<Bytes> {
    w.ep.correlation(&Bytes::from(raw)).map(|c| c.id().clone())
}

#[test]
fn both_legs_of_a_call_correlate_by_leg_a_call_id_and_other_messages_by_their_own() {
    let mut w = world(Limits::default());
    let (inv_b, ok) = connected(&mut w, "corr-1");
    let a_id = Some(Bytes::from_static(b"corr-1"));
    let b_call_id = inv_b.headers.get_bytes(&HeaderName::CallId).expect("call-id");
    assert_ne!(b_call_id, "corr-1");
    // What we sent on leg B (From carries our tag), and what B sends us (our tag in To).
    assert_eq!(correlation(&w, &Message::Request(inv_b.clone())), a_id);
    let c = w.ep.correlation(&inv_b.to_bytes()).expect("a SIP message");
    assert_eq!((c.call_id, c.leg_a), (b_call_id.clone(), a_id.clone()), "leg B's own Call-ID and leg A's");
    let from_b = answer(&inv_b, 200, "b1", B, "");
    assert_eq!(correlation_of(&w, from_b), a_id);
    let bye_from_b = in_dialog(
        "BYE",
        SBC_B,
        &format!("{};tag=b1", hv(&inv_b, HeaderName::To)),
        &hv(&inv_b, HeaderName::From),
        &b_call_id,
        7,
        B,
    );
    assert_eq!(correlation_of(&w, bye_from_b), a_id);
    // Leg A's messages carry leg A's Call-ID anyway.
    assert_eq!(correlation(&w, &Message::Response(ok)), a_id);
    // A message of no call: its own Call-ID; garbage: none.
    let stray = in_dialog("OPTIONS", SBC_B, "<sip:x@h>;tag=9", "<sip:y@h>", b"other", 1, B);
    assert_eq!(correlation_of(&w, stray), Some(Bytes::from_static(b"other")));
    assert_eq!(correlation_of(&w, "not sip".into()), None);
}
