//! RFC 4475 torture messages against the parser.
//!
//! The messages are read from `shared/corpus/rfc4475/` beside the repository (byte-exact from the RFC's archive;
//! `SBC_RFC4475_DIR` overrides the location). `EXPECTED.tsv` says per file whether a parser must accept, must
//! reject, or may do either; [`OUTCOMES`] below is our decision for every file, checked against it. "Accept" means
//! the message parses and re-serializes to a message with the same meaning (parse, serialize, parse again: equal).

use bytes::Bytes;
use sbc_proto::msg::{parse_datagram, HeaderName, Message, ParseErrorKind};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accept,
    Reject,
}
use Outcome::{Accept, Reject};

/// What this parser does with each message, and why where the RFC leaves a choice.
const OUTCOMES: &[(&str, Outcome)] = &[
    ("archive-only/baddn-archive.sip", Reject),
    ("archive-only/test.sip", Reject),
    // §3.1.2.14: `< sip:… >`: white space inside the brackets is not an addr-spec.
    ("invalid/badaspec.sip", Reject),
    ("invalid/baddate.sip", Accept), // Date stays opaque: an SBC has no business with it.
    ("invalid/baddn.sip", Reject),   // unquoted `Bell, Alexander` is not a display name.
    ("invalid/badinv01.sip", Reject),
    ("invalid/badvers.sip", Reject),
    ("invalid/bigcode.sip", Reject),
    ("invalid/clerr.sip", Reject),
    ("invalid/escruri.sip", Accept), // escaped URI headers are well formed per §25.1; routing ignores them.
    ("invalid/ltgtruri.sip", Reject),
    ("invalid/lwsruri.sip", Reject),
    ("invalid/lwsstart.sip", Reject),
    ("invalid/mismatch01.sip", Reject),
    ("invalid/mismatch02.sip", Reject),
    ("invalid/ncl.sip", Reject),
    ("invalid/quotbal.sip", Reject),
    ("invalid/regbadct.sip", Accept), // unbracketed URI with `?`: the `?headers` stay part of the URI.
    ("invalid/scalar02.sip", Reject),
    ("invalid/scalarlg.sip", Reject),
    ("invalid/trws.sip", Reject),
    ("semantic/badbranch.sip", Accept), // parses; the transaction layer matches it the RFC 2543 way.
    ("semantic/bcast.sip", Accept),
    ("semantic/bext01.sip", Accept),
    ("semantic/cparam01.sip", Accept),
    ("semantic/cparam02.sip", Accept),
    ("semantic/insuf.sip", Reject),
    ("semantic/inv2543.sip", Accept), // RFC 2543 peers still exist on carrier trunks.
    ("semantic/invut.sip", Accept),
    ("semantic/mcl01.sip", Reject),
    ("semantic/multi01.sip", Reject),
    ("semantic/novelsc.sip", Accept),
    ("semantic/regaut01.sip", Accept),
    ("semantic/regescrt.sip", Accept),
    ("semantic/sdp01.sip", Accept),
    ("semantic/unkscm.sip", Accept),
    ("semantic/unksm2.sip", Accept),
    ("semantic/zeromf.sip", Accept),
    ("valid/dblreq.sip", Accept),
    ("valid/esc01.sip", Accept),
    ("valid/esc02.sip", Accept),
    ("valid/escnull.sip", Accept),
    // Its To display name escapes BEL, NUL and DEL as quoted-pairs: legal, unlike a raw control character.
    ("valid/intmeth.sip", Accept),
    ("valid/longreq.sip", Accept),
    ("valid/lwsdisp.sip", Accept),
    ("valid/mpart01.sip", Accept),
    ("valid/noreason.sip", Accept),
    ("valid/semiuri.sip", Accept),
    ("valid/transports.sip", Accept),
    ("valid/unreason.sip", Accept),
    ("valid/wsinv.sip", Accept),
];

fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SBC_RFC4475_DIR") {
        return PathBuf::from(d);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("../shared/corpus/rfc4475");
    assert!(
        dir.join("EXPECTED.tsv").is_file(),
        "RFC 4475 corpus not found at {} (expected shared/ beside the repository; set SBC_RFC4475_DIR)",
        dir.display()
    );
    dir
}

fn expected() -> BTreeMap<String, String> {
    let tsv = std::fs::read_to_string(corpus_dir().join("EXPECTED.tsv")).expect("read EXPECTED.tsv");
    tsv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().expect("file").to_owned(), f.next().expect("outcome").to_owned())
        })
        .collect()
}

fn load(name: &str) -> Bytes {
    let p = corpus_dir().join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn our_choice(name: &str) -> Outcome {
    OUTCOMES.iter().find(|(n, _)| *n == name).map(|(_, o)| *o).unwrap_or_else(|| panic!("{name} not in OUTCOMES"))
}

#[test]
fn every_corpus_file_has_a_decision_compatible_with_the_rfc() {
    let exp = expected();
    assert_eq!(exp.len(), OUTCOMES.len(), "EXPECTED.tsv and OUTCOMES list different files");
    for (name, want) in &exp {
        let ours = our_choice(name);
        match want.as_str() {
            "accept" => assert_eq!(ours, Accept, "{name}: the RFC says accept"),
            "reject" => assert_eq!(ours, Reject, "{name}: the RFC says reject"),
            "either" => {}
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[test]
fn parser_does_what_outcomes_say() {
    let mut failures = Vec::new();
    for (name, _) in OUTCOMES {
        let raw = load(name);
        let got = parse_datagram(raw.clone());
        match (our_choice(name), &got) {
            (Accept, Ok(m)) => {
                let again = parse_datagram(m.to_bytes());
                if again.as_ref() != Ok(m) {
                    failures.push(format!("{name}: re-serialized message differs: {again:?}"));
                }
            }
            (Reject, Err(_)) => {}
            (want, _) => failures.push(format!("{name}: want {want:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn request(name: &str) -> sbc_proto::msg::Request {
    match parse_datagram(load(name)).expect(name) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name}: expected a request"),
    }
}

fn err_kind(name: &str) -> ParseErrorKind {
    parse_datagram(load(name)).expect_err(name).kind
}

#[test]
fn rejections_carry_the_right_reason() {
    assert_eq!(err_kind("invalid/badvers.sip"), ParseErrorKind::UnsupportedVersion);
    assert_eq!(parse_datagram(load("invalid/badvers.sip")).expect_err("505").status(), 505);
    assert_eq!(err_kind("invalid/bigcode.sip"), ParseErrorKind::StatusCode);
    assert!(matches!(err_kind("invalid/clerr.sip"), ParseErrorKind::ContentLength(_)));
    assert!(matches!(err_kind("invalid/ncl.sip"), ParseErrorKind::ContentLength(_)));
    assert!(matches!(err_kind("semantic/mcl01.sip"), ParseErrorKind::ContentLength(_)));
    assert_eq!(err_kind("invalid/mismatch01.sip"), ParseErrorKind::CSeqMethodMismatch);
    assert_eq!(err_kind("invalid/mismatch02.sip"), ParseErrorKind::CSeqMethodMismatch);
    assert!(matches!(err_kind("semantic/multi01.sip"), ParseErrorKind::DuplicateHeader(_)));
    assert!(matches!(err_kind("semantic/insuf.sip"), ParseErrorKind::MissingHeader(_)));
    assert!(matches!(err_kind("invalid/scalar02.sip"), ParseErrorKind::BadHeader { header: "CSeq", .. }));
    assert!(matches!(err_kind("invalid/scalarlg.sip"), ParseErrorKind::BadHeader { header: "CSeq", .. }));
    assert!(matches!(err_kind("invalid/quotbal.sip"), ParseErrorKind::BadHeader { header: "To", .. }));
    assert!(matches!(err_kind("invalid/badinv01.sip"), ParseErrorKind::BadHeader { header: "Via", .. }));
    // The archived baddn lacks the final empty line; its unquoted display name is found first.
    assert!(matches!(err_kind("archive-only/baddn-archive.sip"), ParseErrorKind::BadHeader { header: "From", .. }));
    assert!(matches!(err_kind("archive-only/test.sip"), ParseErrorKind::StartLine(_)));
}

#[test]
fn accepted_messages_mean_what_the_rfc_says() {
    // §3.1.1.1: 34 lines of white space abuse.
    let wsinv = request("valid/wsinv.sip");
    assert_eq!(wsinv.headers.to().expect("to").tag().expect("tag"), b"1918181833n");
    assert_eq!(wsinv.headers.from().expect("from").tag().expect("tag"), b"98asjd8");
    assert_eq!(wsinv.headers.max_forwards().expect("mf"), Some(68));
    assert_eq!(wsinv.headers.cseq().expect("cseq").seq, 9);
    let vias = wsinv.headers.vias().expect("vias");
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[2].branch().expect("branch"), b"z9hG4bK30239");
    assert_eq!(wsinv.body.len(), 150);
    assert_eq!(wsinv.headers.count(&HeaderName::Subject), 1);

    // §3.1.1.7: 34 Via values across compact and odd-case names.
    assert_eq!(request("valid/longreq.sip").headers.vias().expect("vias").len(), 34);

    // §3.1.1.8: Content-Length 0 and trailing octets: one REGISTER with an empty body.
    let dbl = request("valid/dblreq.sip");
    assert_eq!(dbl.method, sbc_proto::msg::Method::Register);
    assert!(dbl.body.is_empty());

    // §3.1.1.11: binary multipart body framed by Content-Length.
    let mp = request("valid/mpart01.sip");
    assert_eq!(mp.body.len(), 553);
    assert!(mp.body.contains(&0));

    // §3.1.1.12/13: UTF-8 and empty reason phrases.
    for (name, reason) in [("valid/unreason.sip", "= 2**3 * 5**2 "), ("valid/noreason.sip", "")] {
        match parse_datagram(load(name)).expect(name) {
            Message::Response(r) => assert!(String::from_utf8_lossy(&r.reason).contains(reason), "{name}"),
            Message::Request(_) => panic!("{name}: expected a response"),
        }
    }

    // §3.1.1.2: control characters escaped inside a quoted display name are text, kept as received.
    let to = request("valid/intmeth.sip").headers.to().expect("to");
    assert_eq!(to.display(), Some(&b"\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\""[..]));

    // §3.4.1: RFC 2543 request: no branch, no From tag, no Max-Forwards.
    let old = request("semantic/inv2543.sip");
    assert!(!old.headers.top_via().expect("via").has_rfc3261_branch());
    assert_eq!(old.headers.max_forwards().expect("mf"), None);
}
