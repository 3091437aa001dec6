use super::*;
use crate::control::LegStats;
use crate::session::Interface;

const OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
const ANSWER: &str = "v=0\r\no=carrier 5 5 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn server() -> NgServer {
    NgServer::new(MediaConfig {
        interfaces: vec![
            Interface { name: "a".into(), address: "198.18.1.1".parse().unwrap() },
            Interface { name: "b".into(), address: "198.18.2.1".parse().unwrap() },
        ],
        first_port: 30000,
        last_port: 30099,
        quarantine: Duration::from_secs(5),
        strict: true,
        cname_seed: 1,
        dtls_fingerprint: None,
    })
    .unwrap()
}

fn src() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// Sends `pairs` with `cookie` and returns the reply's dictionary.
fn ask(s: &mut NgServer, now: Instant, cookie: &str, pairs: Vec<(&str, Value)>) -> Value {
    let reply = s.handle_datagram(now, src(), &ng::encode(cookie, &Value::dict(pairs))).expect("a reply");
    let (c, body) = ng::decode(&reply).unwrap();
    assert_eq!(c, cookie);
    body
}

fn result(v: &Value) -> &str {
    v.get("result").and_then(Value::as_str).unwrap()
}

fn reason(v: &Value) -> &str {
    v.get("error-reason").and_then(Value::as_str).unwrap_or("")
}

fn offer(call: &str) -> Vec<(&str, Value)> {
    vec![
        ("command", Value::str("offer")),
        ("call-id", Value::str(call)),
        ("from-tag", Value::str("ft")),
        ("sdp", Value::str(OFFER)),
        ("direction", Value::str_list(&["a", "b"])),
        ("replace", Value::str_list(&["origin", "session-connection"])),
        ("flags", Value::str_list(&["trust-address"])),
        ("ICE", Value::str("remove")),
        ("label", Value::str("caller")),
    ]
}

fn answer(call: &str) -> Vec<(&str, Value)> {
    vec![
        ("command", Value::str("answer")),
        ("call-id", Value::str(call)),
        ("from-tag", Value::str("ft")),
        ("to-tag", Value::str("tt")),
        ("sdp", Value::str(ANSWER)),
        ("direction", Value::str_list(&["b", "a"])),
    ]
}

fn commands(s: &mut NgServer) -> Vec<Command> {
    std::iter::from_fn(|| s.poll_command()).collect()
}

fn sdp(v: &Value) -> &str {
    v.get("sdp").and_then(Value::as_str).unwrap()
}

#[test]
fn ping_is_answered_pong() {
    let mut s = server();
    assert_eq!(result(&ask(&mut s, Instant::now(), "1", vec![("command", Value::str("ping"))])), "pong");
}

#[test]
fn offer_and_answer_anchor_each_side_on_its_direction_interface() {
    let mut s = server();
    let now = Instant::now();
    let o = ask(&mut s, now, "1", offer("c1"));
    assert_eq!(result(&o), "ok", "{o:?}");
    let to_b = sdp(&o);
    assert!(to_b.contains("c=IN IP4 198.18.2.1\r\n") && !to_b.contains("198.18.1.10"), "{to_b}");
    let a = ask(&mut s, now, "2", answer("c1"));
    assert_eq!(result(&a), "ok", "{a:?}");
    let to_a = sdp(&a);
    assert!(to_a.contains("c=IN IP4 198.18.1.1\r\n") && !to_a.contains("198.18.2.10"), "{to_a}");
    let upserts: Vec<_> = commands(&mut s)
        .into_iter()
        .filter_map(|c| match c {
            Command::Upsert(e) => Some(e),
            _ => None,
        })
        .collect();
    let b_rtp = upserts.iter().rev().find(|e| e.leg == Leg::B && !e.rtcp).unwrap();
    assert_eq!(b_rtp.peer, Some("198.18.2.10:7000".parse().unwrap()));
    assert_eq!(b_rtp.local.ip(), "198.18.2.1".parse::<IpAddr>().unwrap());
    assert!(NgServer::owns(b_rtp.session) && b_rtp.strict);
    assert_eq!((s.calls(), s.counters().calls_created), (1, 1));
}

#[test]
fn a_retransmitted_offer_gets_the_same_bytes_and_creates_nothing() {
    let mut s = server();
    let now = Instant::now();
    let dgram = ng::encode("77", &Value::dict(offer("c1")));
    let first = s.handle_datagram(now, src(), &dgram).unwrap();
    let n = commands(&mut s).len();
    assert_eq!(n, 4, "RTP and RTCP on both legs");
    let again = s.handle_datagram(now + Duration::from_secs(2), src(), &dgram).unwrap();
    assert_eq!(first, again);
    assert_eq!(commands(&mut s).len(), 0, "nothing sent to the relay again");
    assert_eq!((s.counters().retransmissions, s.counters().calls_created), (1, 1));
    // After the cache's time the cookie is a new request (a re-offer: same ports).
    let later = s.handle_datagram(now + CACHE_TTL, src(), &dgram).unwrap();
    assert_eq!(s.counters().retransmissions, 1);
    assert_eq!(sdp(&ng::decode(&later).unwrap().1), sdp(&ng::decode(&first).unwrap().1));
}

#[test]
fn the_cache_is_bounded() {
    let mut cache = ReplyCache::default();
    let now = Instant::now();
    for i in 0..CACHE_CAPACITY + 10 {
        cache.put(now, i.to_string(), vec![1]);
    }
    assert_eq!(cache.replies.len(), CACHE_CAPACITY);
    assert!(cache.get(now, "0").is_none() && cache.get(now, &(CACHE_CAPACITY + 9).to_string()).is_some());
}

#[test]
fn malformed_bencode_gets_an_error_and_changes_nothing() {
    let mut s = server();
    let now = Instant::now();
    let reply = s.handle_datagram(now, src(), b"c9 d7:command5:offer").unwrap();
    let (cookie, body) = ng::decode(&reply).unwrap();
    assert_eq!((cookie.as_str(), result(&body)), ("c9", "error"));
    assert!(reason(&body).contains("bencode"), "{body:?}");
    assert!(s.handle_datagram(now, src(), b"nocookie").is_none());
    let reply = s.handle_datagram(now, src(), b"c10 li1ee").unwrap();
    assert_eq!(result(&ng::decode(&reply).unwrap().1), "error");
    assert_eq!((s.calls(), commands(&mut s).len(), s.counters().malformed), (0, 0, 3));
}

#[test]
fn unsupported_flags_and_commands_are_refused_and_create_nothing() {
    let mut s = server();
    let now = Instant::now();
    let mut o = offer("c1");
    o.push(("flags", Value::str_list(&["record-call"])));
    let r = ask(&mut s, now, "1", o);
    assert_eq!(result(&r), "error");
    assert!(reason(&r).contains("recording"), "{r:?}");
    let mut o = offer("c1");
    o.push(("codec", Value::dict([("transcode", Value::str_list(&["G722"]))])));
    assert!(reason(&ask(&mut s, now, "2", o)).contains("transcoding"));
    let r = ask(&mut s, now, "3", vec![("command", Value::str("play DTMF")), ("call-id", Value::str("c1"))]);
    assert!(reason(&r).contains("play DTMF"), "{r:?}");
    let mut o = offer("c1");
    o.push(("direction", Value::str_list(&["a", "nowhere"])));
    assert!(reason(&ask(&mut s, now, "4", o)).contains("nowhere"));
    assert_eq!((s.calls(), commands(&mut s).len(), s.counters().errors), (0, 0, 4));
}

#[test]
fn bad_sdp_is_an_error_that_leaves_no_call() {
    let mut s = server();
    let mut o = offer("c1");
    o.retain(|(k, _)| *k != "sdp");
    o.push(("sdp", Value::str("hello")));
    let r = ask(&mut s, Instant::now(), "1", o);
    assert_eq!(result(&r), "error");
    assert_eq!((s.calls(), commands(&mut s).len()), (0, 0));
}

#[test]
fn answer_for_an_unknown_call_is_refused() {
    let mut s = server();
    assert_eq!(reason(&ask(&mut s, Instant::now(), "1", answer("nope"))), "Unknown call-id");
}

fn delete(call: &str) -> Vec<u8> {
    ng::encode(
        &format!("del-{call}"),
        &Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(call)),
            ("from-tag", Value::str("ft")),
        ]),
    )
}

fn stats(session: SessionId, packets: [u64; 2]) -> Event {
    let mut legs = [LegStats::default(); 2];
    for (l, p) in legs.iter_mut().zip(packets) {
        l.received.packets = p;
        l.received.bytes = p * 172;
    }
    Event::Stats(SessionStats { session, legs })
}

#[test]
fn delete_answers_with_the_relays_final_figures_and_list_is_empty() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", offer("c1"));
    ask(&mut s, now, "2", answer("c1"));
    ask(&mut s, now, "3", offer("c2"));
    commands(&mut s);
    let l = ask(&mut s, now, "4", vec![("command", Value::str("list"))]);
    assert_eq!(l.get("calls"), Some(&Value::str_list(&["c1", "c2"])));
    assert_eq!(s.handle_datagram(now, src(), &delete("c1")), None, "the reply waits for the figures");
    assert_eq!(s.handle_datagram(now, src(), &delete("c1")), None, "a retransmission while it waits");
    let session = SessionId(NG_SESSION_BASE);
    assert_eq!(commands(&mut s), vec![Command::Remove { session }]);
    assert_eq!(s.poll_timeout(), Some(now + DELETE_WAIT));
    s.handle_event(now, &stats(session, [200, 300]));
    let (to, reply) = s.poll_transmit().expect("the delete's reply");
    assert_eq!(to, src());
    let (cookie, body) = ng::decode(&reply).unwrap();
    assert_eq!((cookie.as_str(), result(&body)), ("del-c1", "ok"));
    let rtp = body.get("totals").and_then(|t| t.get("RTP")).unwrap();
    assert_eq!(rtp.get("packets"), Some(&Value::Int(500)));
    assert_eq!(s.counters().packets, 500, "ended calls' packets are counted for `statistics`");
    assert_eq!(s.handle_datagram(now, src(), &delete("c1")), Some(reply), "now from the cache");
    // The second call's relay never reports: the reply goes without figures at the deadline.
    assert_eq!(s.handle_datagram(now, src(), &delete("c2")), None);
    s.handle_timeout(now + DELETE_WAIT - Duration::from_millis(1));
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(now + DELETE_WAIT);
    let (_, reply) = s.poll_transmit().expect("the delete's reply at its deadline");
    assert_eq!(result(&ng::decode(&reply).unwrap().1), "ok");
    assert_eq!(s.poll_timeout(), None);
    // rtpengine's answer to a delete of an unknown call: ok with a warning.
    let again = ask(&mut s, now, "5", vec![("command", Value::str("delete")), ("call-id", Value::str("c1"))]);
    assert_eq!(result(&again), "ok");
    assert_eq!(again.get("warning"), Some(&Value::str("Call-ID not found or tags didn't match")));
    let l = ask(&mut s, now, "6", vec![("command", Value::str("list"))]);
    assert_eq!(l.get("calls"), Some(&Value::List(vec![])));
}

fn query(call: &str, cookie: &str) -> Vec<u8> {
    ng::encode(cookie, &Value::dict([("command", Value::str("query")), ("call-id", Value::str(call))]))
}

#[test]
fn query_asks_the_relay_for_live_figures_and_shows_tags_ports_peers_and_them() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", offer("c1"));
    ask(&mut s, now, "2", answer("c1"));
    let session = commands(&mut s)
        .into_iter()
        .find_map(|c| match c {
            Command::Upsert(e) => Some(e.session),
            _ => None,
        })
        .unwrap();
    assert_eq!(s.handle_datagram(now, src(), &query("c1", "3")), None, "the reply waits for the relay's figures");
    assert_eq!(s.handle_datagram(now, src(), &query("c1", "3")), None, "a retransmission while it waits");
    assert_eq!(commands(&mut s), vec![Command::Query { session }]);
    let mut legs = [LegStats::default(); 2];
    legs[0].received.packets = 110;
    legs[0].received.rtcp_packets = 10;
    legs[0].received.bytes = 17200;
    legs[0].kernel_packets = 99;
    s.handle_event(now, &Event::Figures(SessionStats { session, legs }));
    let (to, reply) = s.poll_transmit().expect("the query's reply");
    assert_eq!(to, src());
    let (cookie, q) = ng::decode(&reply).unwrap();
    assert_eq!((cookie.as_str(), result(&q)), ("3", "ok"));
    let ft = q.get("tags").and_then(|t| t.get("ft")).unwrap();
    assert_eq!(ft.get("label"), Some(&Value::str("caller")));
    let Some(Value::List(medias)) = ft.get("medias") else { panic!("{q:?}") };
    let Some(Value::List(streams)) = medias[0].get("streams") else { panic!("{q:?}") };
    assert_eq!(streams[0].get("local port"), Some(&Value::Int(30000)));
    let endpoint = streams[0].get("endpoint").unwrap();
    assert_eq!(endpoint.get("address"), Some(&Value::str("198.18.1.10")));
    assert_eq!(ft.get("stats").and_then(|s| s.get("packets")), Some(&Value::Int(110)));
    assert!(q.get("tags").and_then(|t| t.get("tt")).is_some(), "{q:?}");
    let totals = q.get("totals").unwrap();
    assert_eq!(totals.get("RTP").and_then(|r| r.get("packets")), Some(&Value::Int(100)));
    assert_eq!(totals.get("RTCP").and_then(|r| r.get("packets")), Some(&Value::Int(10)));
    assert_eq!(totals.get("RTP").and_then(|r| r.get("kernel packets")), Some(&Value::Int(99)));
    assert_eq!(s.handle_datagram(now, src(), &query("c1", "3")), Some(reply), "now from the cache");
    assert_eq!(s.counters().packets, 0, "live figures are not counted as ended calls' packets");
}

#[test]
fn query_without_an_answer_from_the_relay_is_answered_at_its_deadline_and_an_unknown_call_at_once() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", offer("c1"));
    commands(&mut s);
    assert_eq!(s.handle_datagram(now, src(), &query("c1", "2")), None);
    assert_eq!(s.poll_timeout(), Some(now + DELETE_WAIT));
    s.handle_timeout(now + DELETE_WAIT - Duration::from_millis(1));
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(now + DELETE_WAIT);
    let (_, reply) = s.poll_transmit().expect("the query's reply at its deadline");
    let body = ng::decode(&reply).unwrap().1;
    assert_eq!(result(&body), "ok");
    assert!(body.get("tags").and_then(|t| t.get("ft")).is_some(), "{body:?}");
    assert_eq!(s.poll_timeout(), None);
    let unknown = ask(&mut s, now, "3", vec![("command", Value::str("query")), ("call-id", Value::str("nope"))]);
    assert_eq!(reason(&unknown), "Unknown call-id");
}

#[test]
fn an_idle_session_is_deleted_and_counted() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", offer("c1"));
    let session = SessionId(NG_SESSION_BASE);
    commands(&mut s);
    s.handle_event(now, &Event::Idle { session });
    assert_eq!(commands(&mut s), vec![Command::Remove { session }]);
    let st = ask(&mut s, now, "2", vec![("command", Value::str("statistics"))]);
    let total = st.get("statistics").and_then(|v| v.get("totalstatistics")).unwrap();
    assert_eq!(total.get("timeoutsessions"), Some(&Value::Int(1)));
    assert_eq!(total.get("managedsessions"), Some(&Value::Int(1)));
    let current = st.get("statistics").and_then(|v| v.get("currentstatistics")).unwrap();
    assert_eq!(current.get("sessionsown"), Some(&Value::Int(0)));
    // An event of a session that is not ours changes nothing.
    s.handle_event(now, &Event::Idle { session: SessionId(5) });
    assert_eq!(s.counters().calls_timed_out, 1);
}

#[test]
fn a_reoffer_from_the_callee_comes_from_leg_b() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", offer("c1"));
    ask(&mut s, now, "2", answer("c1"));
    commands(&mut s);
    let reoffer = vec![
        ("command", Value::str("offer")),
        ("call-id", Value::str("c1")),
        ("from-tag", Value::str("tt")),
        ("to-tag", Value::str("ft")),
        ("sdp", Value::str(&ANSWER.replace("7000", "7100"))),
    ];
    let r = ask(&mut s, now, "3", reoffer);
    assert!(sdp(&r).contains("c=IN IP4 198.18.1.1\r\n"), "towards the caller: {r:?}");
    let b_rtp = commands(&mut s)
        .into_iter()
        .filter_map(|c| match c {
            Command::Upsert(e) if e.leg == Leg::B && !e.rtcp => Some(e),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(b_rtp.peer, Some("198.18.2.10:7100".parse().unwrap()));
}

#[test]
fn outcomes_count_commands_by_name_and_result() {
    let mut s = server();
    let now = Instant::now();
    ask(&mut s, now, "1", vec![("command", Value::str("ping"))]);
    ask(&mut s, now, "2", offer("c1"));
    ask(&mut s, now, "2", offer("c1"));
    ask(&mut s, now, "3", answer("nope"));
    ask(&mut s, now, "4", vec![("command", Value::str("play DTMF")), ("call-id", Value::str("c1"))]);
    assert!(s.handle_datagram(now, src(), &delete("c1")).is_none(), "waits for the relay's figures");
    s.handle_timeout(now + DELETE_WAIT);
    let got: Vec<_> = s.outcomes().collect();
    assert_eq!(
        got,
        [("answer", "error", 1), ("delete", "ok", 1), ("offer", "ok", 1), ("other", "error", 1), ("ping", "ok", 1)],
        "the retransmitted offer is not counted again"
    );
}

fn records(s: &mut NgServer) -> Vec<NgRecord> {
    std::iter::from_fn(|| s.poll_record()).collect()
}

fn upserted_ports(cmds: &[Command]) -> Vec<(SocketAddr, Option<SocketAddr>)> {
    let mut ports: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Upsert(e) => Some((e.local, e.peer)),
            _ => None,
        })
        .collect();
    ports.sort();
    ports.dedup_by_key(|(local, _)| *local);
    ports
}

#[test]
fn a_standby_adopts_the_replicated_calls_with_their_ports_tags_and_latches_and_deletes_them() {
    let (mut active, mut standby) = (server(), server());
    let now = Instant::now();
    ask(&mut active, now, "0", offer("before"));
    assert!(records(&mut active).is_empty(), "a box alone replicates nothing");
    active.set_replication(true);
    ask(&mut active, now, "1", offer("c1"));
    ask(&mut active, now, "2", answer("c1"));
    let cmds = commands(&mut active);
    let session = match &cmds[cmds.len() - 1] {
        Command::Upsert(e) => e.session,
        other => panic!("{other:?}"),
    };
    let cmds: Vec<Command> =
        cmds.into_iter().filter(|c| matches!(c, Command::Upsert(e) if e.session == session)).collect();
    let a_rtp = upserted_ports(&cmds).into_iter().find(|(l, _)| l.ip() == "198.18.1.1".parse::<IpAddr>().unwrap());
    let nat: SocketAddr = "203.0.113.7:9000".parse().unwrap();
    active.handle_event(now, &Event::Latched { session, local: a_rtp.unwrap().0, peer: nat });
    let sent = records(&mut active);
    let versions: Vec<u64> = sent
        .iter()
        .filter_map(|r| match r {
            NgRecord::Call(c) if c.call_id == "c1" => Some(c.version),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [1, 2, 3], "offer, answer, latch");
    // Out of order and twice: the newest version holds.
    for r in sent.iter().rev().chain(sent.iter()) {
        standby.apply_record(r.clone());
    }
    for r in active.snapshot() {
        standby.apply_record(r);
    }
    assert_eq!((standby.foreign_calls(), standby.calls()), (2, 0), "c1 and the call from before (snapshot)");
    assert!(commands(&mut standby).is_empty(), "nothing opened before the takeover");

    assert_eq!(standby.take_over(now), 2);
    let adopted = commands(&mut standby);
    let c1_ports: Vec<_> = upserted_ports(&cmds);
    for (local, _) in &c1_ports {
        assert!(upserted_ports(&adopted).iter().any(|(l, _)| l == local), "{local} opened on the standby");
    }
    let latched = adopted.iter().any(|c| matches!(c, Command::Upsert(e) if e.latched == Some(nat)));
    assert!(latched, "the latched peer goes on: {adopted:?}");
    let query = Value::dict([("command", Value::str("query")), ("call-id", Value::str("c1"))]);
    assert!(standby.handle_datagram(now, src(), &ng::encode("q", &query)).is_none(), "waits for the figures");
    assert!(matches!(commands(&mut standby).as_slice(), [Command::Query { .. }]), "asks the relay");
    standby.handle_timeout(now + DELETE_WAIT);
    let (_, reply) = standby.poll_transmit().expect("query answered at its deadline");
    let body = ng::decode(&reply).unwrap().1;
    let tags = body.get("tags").unwrap_or_else(|| panic!("{body:?}"));
    assert!(tags.get("ft").is_some() && tags.get("tt").is_some(), "both tags known after the takeover: {body:?}");

    // The new active numbers its own calls past the adopted sessions.
    standby.set_replication(true);
    ask(&mut standby, now, "3", offer("c2"));
    let ids: Vec<u64> = records(&mut standby)
        .iter()
        .filter_map(|r| match r {
            NgRecord::Call(c) => Some(c.session),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(ids[0] > session.0, "{ids:?} after {session:?}");

    assert!(standby.handle_datagram(now, src(), &delete("c1")).is_none(), "waits for the relay's figures");
    assert!(matches!(commands(&mut standby).last(), Some(Command::Remove { session: s }) if *s == session));
    assert!(matches!(records(&mut standby).as_slice(), [NgRecord::Ended { call_id, version: 4 }] if call_id == "c1"));
    assert_eq!(standby.calls(), 2);
}

#[test]
fn a_demoted_active_closes_its_calls_media_and_holds_them_as_foreign() {
    let mut s = server();
    let now = Instant::now();
    s.set_replication(true);
    ask(&mut s, now, "1", offer("c1"));
    commands(&mut s);
    assert_eq!(s.demote(now), 1);
    assert!(matches!(commands(&mut s).as_slice(), [Command::Remove { .. }]));
    assert_eq!((s.calls(), s.foreign_calls()), (0, 1));
    let r = ask(&mut s, now, "2", vec![("command", Value::str("statistics"))]);
    let current = r.get("statistics").and_then(|s| s.get("currentstatistics")).unwrap();
    assert_eq!(current.get("sessionsforeign").and_then(Value::as_int), Some(1), "{r:?}");
    // An end replicated by the peer (after it took over) forgets it.
    s.apply_record(NgRecord::Ended { call_id: "c1".into(), version: 9 });
    assert_eq!(s.foreign_calls(), 0);
}
