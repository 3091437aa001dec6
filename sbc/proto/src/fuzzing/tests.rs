//! The invariants without cargo-fuzz: generated scenarios, and a replay of the fuzzer's corpus when there is one.

use super::*;
use crate::endpoint::IdGenerator;
use arbitrary::{Arbitrary, Unstructured};

/// A scenario of weighted steps: mostly calls from the customer and answers to what the endpoint sent, so that
/// calls get answered, re-INVITEd, cancelled and hung up, with the odd stranger, garbage and pause.
fn weighted(rng: &mut IdGenerator) -> Scenario {
    let mut bytes = |n: usize| (0..n).map(|_| rng.random() as u8).collect::<Vec<u8>>();
    let seed = bytes(4096);
    let mut u = Unstructured::new(&seed);
    let setup = Setup::arbitrary(&mut u).expect("enough bytes");
    let mut steps = Vec::new();
    for _ in 0..MAX_STEPS {
        let pick = u.int_in_range(0..=99u8).unwrap_or(0);
        let any = |u: &mut Unstructured| Step::arbitrary(u).unwrap_or(Step::FireAll);
        let step = match pick {
            0..=17 => Step::Request {
                from: Actor::Customer,
                method: Method::Invite,
                ids: Ids { to_tag: None, ..Ids::arbitrary(&mut u).expect("bytes") },
                number: 0,
                body: Body::Sdp(1),
            },
            18..=49 => Step::Answer(Answer::arbitrary(&mut u).expect("bytes")),
            50..=61 => Step::Ack { on: u8::arbitrary(&mut u).unwrap_or(0), same_branch: false, body: Body::None },
            62..=71 => Step::InDialog {
                on: u8::arbitrary(&mut u).unwrap_or(0),
                method: *u
                    .choose(&[Method::Bye, Method::Invite, Method::Update, Method::Prack])
                    .unwrap_or(&Method::Bye),
                to_tag: 0,
                branch: u8::arbitrary(&mut u).unwrap_or(0),
                cseq: 1,
                body: *u.choose(&[Body::None, Body::Sdp(2), Body::JunkSdp]).unwrap_or(&Body::None),
            },
            72..=77 => Step::Cancel { of: u8::arbitrary(&mut u).unwrap_or(0) },
            78..=87 => Step::Wait(Pause::Millis(u.int_in_range(0..=40_000).unwrap_or(0))),
            _ => any(&mut u),
        };
        steps.push(step);
    }
    Scenario { setup, steps }
}

fn breaks(s: &Scenario) -> bool {
    std::panic::catch_unwind(|| play(s, false)).is_err()
}

/// The failing `s` with every step removed that it still fails without: the shortest story to debug.
fn shrink(mut s: Scenario) -> Scenario {
    std::panic::set_hook(Box::new(|_| {}));
    let mut i = 0;
    while i < s.steps.len() {
        let mut fewer = s.clone();
        fewer.steps.remove(i);
        if breaks(&fewer) {
            s = fewer;
        } else {
            i += 1;
        }
    }
    let _ = std::panic::take_hook();
    s
}

/// Runs `s`; on a broken invariant, fails with the shrunk scenario and the invariant's message.
fn check(name: &str, s: &Scenario) -> Report {
    match std::panic::catch_unwind(|| play(s, false)) {
        Ok(r) => r,
        Err(_) => {
            let small = shrink(s.clone());
            // With SBC_FUZZ_TRACE set, the shrunk scenario's messages are printed.
            let why = std::panic::catch_unwind(|| run(&small)).expect_err("still breaks");
            let why = why.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{name} broke an invariant: {why}\nshrunk to {small:#?}");
        }
    }
}

#[test]
fn a_call_answered_and_hung_up_has_one_cdr_and_leaves_nothing() {
    let steps = vec![
        Step::Request {
            from: Actor::Customer,
            method: Method::Invite,
            ids: Ids { call: 0, from_tag: 0, to_tag: None, branch: 0, cseq: 0 },
            number: 0,
            body: Body::Sdp(0),
        },
        // The newest request sent is leg B's INVITE: 180, then 200 with an answer.
        Step::Answer(Answer {
            to: 0,
            status: 1,
            to_tag: 0,
            body: Body::None,
            reliable: false,
            session_timer: false,
            record_route: false,
            moved_contact: false,
        }),
        Step::Answer(Answer {
            to: 0,
            status: 4,
            to_tag: 0,
            body: Body::Sdp(1),
            reliable: false,
            session_timer: false,
            record_route: false,
            moved_contact: false,
        }),
        // The newest response sent is the 200 to A: A ACKs it, then hangs up.
        Step::Ack { on: 0, same_branch: false, body: Body::None },
        Step::InDialog { on: 0, method: Method::Bye, to_tag: 0, branch: 3, cseq: 1, body: Body::None },
    ];
    let setup = Setup {
        media: true,
        keepalive: false,
        max_duration: 2,
        follow_redirects: false,
        carrier_auth: false,
        call_limit: 0,
        failover_on_timeout: true,
        drop_unknown: false,
        max_tries: 2,
    };
    let report = run(&Scenario { setup, steps });
    assert_eq!((report.calls, report.answered, report.cdrs, report.parse_errors), (1, 1, 1, 0), "{report:?}");
}

#[test]
fn the_topology_check_catches_an_address_of_the_other_side() {
    let to_b = Peer { transport: Transport::Udp, local: addr(wire::SBC_B), remote: addr(wire::CARRIER_B), conn: None };
    let never = |_: &[u8]| false;
    check_topology(
        &to_b,
        b"BYE sip:x@198.18.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1\r\n\r\nc=IN IP4 198.18.1.10",
        never,
    );
    let leak = b"BYE sip:x@198.18.2.10 SIP/2.0\r\nContact: <sip:198.18.1.10>\r\n\r\n";
    assert!(std::panic::catch_unwind(|| check_topology(&to_b, leak, never)).is_err(), "the customer's address leaked");
    // What the carrier sent us itself, echoed back in a response, is not a leak; the same line unsent is.
    let echo = b"SIP/2.0 481 Call/Transaction Does Not Exist\r\nFrom: <sip:+4940111@198.18.1.10>;tag=f0\r\n\r\n";
    let sent = |line: &[u8]| line == b"From: <sip:+4940111@198.18.1.10>;tag=f0";
    check_topology(&to_b, echo, sent);
    assert!(std::panic::catch_unwind(|| check_topology(&to_b, echo, never)).is_err(), "not sent by the carrier");
}

#[test]
fn generated_scenarios_keep_the_invariants() {
    let cases: u64 = std::env::var("SBC_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let mut total = Report::default();
    for case in 0..cases {
        let mut rng = IdGenerator::new(case);
        let scenario = if case % 2 == 0 {
            weighted(&mut rng)
        } else {
            // Plain arbitrary bytes, as libFuzzer starts.
            let len = 64 + (rng.random() % 2048) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.random() as u8).collect();
            match Scenario::arbitrary_take_rest(Unstructured::new(&bytes)) {
                Ok(s) => s,
                Err(_) => continue,
            }
        };
        let r = check(&format!("case {case}"), &scenario);
        total.calls += r.calls;
        total.answered += r.answered;
        total.cdrs += r.cdrs;
        total.parse_errors += r.parse_errors;
    }
    // The grammar reaches the deep states: calls start, get answered, and garbage gets refused.
    assert!(total.calls >= cases as usize, "calls started: {total:?}");
    assert!(total.answered >= cases as usize / 10, "calls answered: {total:?}");
    assert!(total.parse_errors > 0, "{total:?}");
    assert_eq!(total.calls, total.cdrs);
}

#[test]
fn committed_seeds_and_the_grown_fuzz_corpus_keep_the_invariants() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = fuzz.join("seeds/endpoint_calls");
    let listing = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    let mut files = listing(&seeds);
    assert!(files.len() >= 10, "the seed scenarios are missing from {}", seeds.display());
    let mut seeded = Report::default();
    for path in &files {
        let data = std::fs::read(path).expect("read a seed");
        let s = Scenario::arbitrary_take_rest(Unstructured::new(&data)).expect("seeds decode");
        let r = check(&path.display().to_string(), &s);
        seeded.calls += r.calls;
        seeded.answered += r.answered;
    }
    assert!(seeded.answered >= 5, "the seeds reach answered calls: {seeded:?}");
    // The corpus libFuzzer grew (git-ignored): there after `make fuzz`, replayed then too (its first 2000 files by
    // name, which keeps this test to seconds however long the fuzzer ran).
    files = listing(&fuzz.join("corpus/endpoint_calls"));
    files.sort();
    for path in files.iter().take(2000) {
        let data = std::fs::read(path).expect("read a corpus file");
        if let Ok(s) = Scenario::arbitrary_take_rest(Unstructured::new(&data)) {
            check(&path.display().to_string(), &s);
        }
    }
}
