//! A browser calls a carrier through anchored media: the relay terminates the browser's WebRTC leg
//! (docs/webrtc-media.md), the carrier sees a small plain RTP/AVP offer, the browser an ICE-lite DTLS answer.

use super::*;
use relay_proto::control::Command;

/// A browser's offer as Chromium 156 with JsSIP sends it (the relay's unit tests have the same): 8 audio codecs
/// with RED, extmap, msid, ssrc, rtcp-fb, an mDNS host candidate.
const CHROMIUM_OFFER: &str = "v=0\r\n\
    o=- 6307837442470342391 2 IN IP4 127.0.0.1\r\n\
    s=-\r\n\
    t=0 0\r\n\
    a=group:BUNDLE 0\r\n\
    a=extmap-allow-mixed\r\n\
    a=msid-semantic: WMS 2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70\r\n\
    m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
    c=IN IP4 198.18.1.10\r\n\
    a=rtcp:9 IN IP4 0.0.0.0\r\n\
    a=candidate:2999745851 1 udp 2122260223 6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b.local 54321 typ host generation 0 network-id 1 network-cost 10\r\n\
    a=candidate:1510613869 1 udp 1686052607 198.18.1.10 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-id 1 network-cost 10\r\n\
    a=ice-ufrag:Xk3R\r\n\
    a=ice-pwd:q8FhR1pTqK5bH0yVb9mZc2Lw\r\n\
    a=ice-options:trickle\r\n\
    a=fingerprint:sha-256 4F:1A:9C:E2:77:0B:5D:63:A8:10:C4:3E:92:58:F1:0D:B6:27:4A:E9:13:7C:D5:82:60:FF:3B:A1:4E:C9:08:75\r\n\
    a=setup:actpass\r\n\
    a=mid:0\r\n\
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
    a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
    a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
    a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
    a=sendrecv\r\n\
    a=msid:2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a\r\n\
    a=rtcp-mux\r\n\
    a=rtcp-rsize\r\n\
    a=rtpmap:111 opus/48000/2\r\n\
    a=rtcp-fb:111 transport-cc\r\n\
    a=fmtp:111 minptime=10;useinbandfec=1\r\n\
    a=rtpmap:63 red/48000/2\r\n\
    a=fmtp:63 111/111\r\n\
    a=rtpmap:9 G722/8000\r\n\
    a=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:13 CN/8000\r\n\
    a=rtpmap:110 telephone-event/48000\r\n\
    a=rtpmap:126 telephone-event/8000\r\n\
    a=ssrc:3735928559 cname:Wq2kX9pLm4vB7nC1\r\n\
    a=ssrc:3735928559 msid:2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a\r\n";

fn invite_from_browser(call_id: &str, sdp: &str) -> String {
    let plain = invite_from_a(call_id);
    let head = plain.split("Content-Type").next().unwrap_or_default();
    format!("{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len())
}

fn upserts(w: &World) -> Vec<&relay_proto::control::EndpointSpec> {
    w.media
        .iter()
        .filter_map(|c| match c {
            Command::Upsert(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn chromium_offer_reaches_the_carrier_as_small_plain_rtp_and_the_browser_gets_an_ice_lite_dtls_answer() {
    let mut w = world_with_media();
    let sent = w.send(A, SBC_A, invite_from_browser("call-wr1", CHROMIUM_OFFER));
    let inv_b = request(&sent, B, Method::Invite);
    let offer = String::from_utf8_lossy(&inv_b.body).into_owned();
    assert!(offer.contains("m=audio 40000 RTP/AVP 111 0 8 110 126\r\n"), "{offer}");
    assert!(offer.contains("c=IN IP4 198.18.2.1\r\n"), "{offer}");
    for webrtc_only in ["ice-", "fingerprint", "setup", "UDP/TLS", "extmap", "msid", "ssrc", "rtcp-fb", "candidate"] {
        assert!(!offer.contains(webrtc_only), "{webrtc_only} towards a carrier:\n{offer}");
    }
    assert!(offer.len() < 400, "{} bytes of SDP from {} offered", offer.len(), CHROMIUM_OFFER.len());
    let browser_leg = *upserts(&w).iter().find(|e| e.leg == relay_proto::control::Leg::A).expect("browser leg");
    assert_eq!(
        (browser_leg.peer, browser_leg.strict, browser_leg.srtp_pending, browser_leg.rtcp),
        (None, true, true, false),
        "the browser's address comes from ICE; nothing crosses before DTLS"
    );
    assert!(!w.media.iter().any(|c| matches!(c, Command::Webrtc(_))), "no WebRTC spec before the answer");
    let browser_local = browser_leg.local;

    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ok = response(&sent, A, 200);
    let to_browser = String::from_utf8_lossy(&ok.body).into_owned();
    for needed in [
        "m=audio 40000 UDP/TLS/RTP/SAVPF 0\r\n",
        "c=IN IP4 198.18.1.1\r\n",
        "a=ice-lite",
        "a=setup:active\r\n",
        "a=rtcp-mux\r\n",
        "a=mid:0\r\n",
        "a=group:BUNDLE 0\r\n",
        "a=fingerprint:sha-256 AB:AB:",
        "typ host",
    ] {
        assert!(to_browser.contains(needed), "no {needed:?} in the answer to the browser:\n{to_browser}");
    }
    let spec = w
        .media
        .iter()
        .find_map(|c| match c {
            Command::Webrtc(s) => Some(s.clone()),
            _ => None,
        })
        .expect("the browser leg's WebRTC spec");
    assert_eq!(spec.local, browser_local);
    assert_eq!(spec.remote_ufrag, "Xk3R");
    assert_eq!(spec.role, relay_proto::webrtc::dtls::DtlsRole::Client, "a=setup:active: we are the DTLS client");
    assert!(to_browser.contains(&format!("a=ice-ufrag:{}\r\n", spec.ice.ufrag)), "{to_browser}");
    assert!(to_browser.contains(&format!("a=ice-pwd:{}\r\n", spec.ice.pwd)), "{to_browser}");
    let carrier_leg = upserts(&w).into_iter().rev().find(|e| e.leg == relay_proto::control::Leg::B).unwrap().clone();
    assert_eq!(carrier_leg.peer, Some(addr("198.18.2.10:7000")));
    assert_eq!((carrier_leg.partner, carrier_leg.srtp_pending), (browser_local, false));
    assert_eq!(w.media.iter().filter(|c| matches!(c, Command::Webrtc(_))).count(), 1, "sent once");
    assert_eq!(w.ep.calls().media_counts(), Some((1, 2)));

    // The browser's media ends (tab closed: no consent for 30 s): BYE on both legs, a CDR.
    let ended = relay_proto::control::Event::WebrtcEnded {
        session: spec.session,
        local: spec.local,
        reason: "consent_expired".into(),
    };
    w.ep.handle_media_event(w.now, &ended);
    let sent = w.drain();
    let bye_a = request(&sent, A, Method::Bye);
    let bye_b = request(&sent, B, Method::Bye);
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    w.send(A, SBC_A, answer(&bye_a, 200, "a1", A, ""));
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!(w.cdrs[0].release_cause, "webrtc_media_ended");
}

#[test]
fn a_vanished_browser_gets_its_cdr_once_the_carrier_answers_the_bye_not_after_the_browsers_bye_times_out() {
    let mut w = world_with_media();
    let sent = w.send(A, SBC_A, invite_from_browser("call-wr3", CHROMIUM_OFFER));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
    let spec = w
        .media
        .iter()
        .find_map(|c| match c {
            Command::Webrtc(s) => Some(s.clone()),
            _ => None,
        })
        .expect("the browser leg's WebRTC spec");
    let ended = relay_proto::control::Event::WebrtcEnded {
        session: spec.session,
        local: spec.local,
        reason: "consent_expired".into(),
    };
    let decided = w.now;
    w.ep.handle_media_event(w.now, &ended);
    let sent = w.drain();
    request(&sent, A, Method::Bye);
    let bye_b = request(&sent, B, Method::Bye);
    assert!(w.cdrs.is_empty(), "the carrier's BYE is still open");
    w.advance(Duration::from_millis(40));
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    // The browser never answers; its BYE would time out 32 s later. The CDR is out now, with the end as decided.
    assert_eq!(w.cdrs.len(), 1, "written when the carrier answered its BYE");
    let cdr = &w.cdrs[0];
    assert_eq!((cdr.release_cause, cdr.released_by, cdr.end), ("webrtc_media_ended", "sbc", decided));
    assert_eq!(w.ep.calls().len(), 0);
    w.advance(Duration::from_secs(40));
    assert_eq!(w.cdrs.len(), 1, "the browser's BYE timing out writes nothing more");
}

#[test]
fn a_browser_offer_without_a_codec_the_relay_passes_is_refused_488_before_any_carrier() {
    let mut w = world_with_media();
    let g722_only = CHROMIUM_OFFER
        .replace("UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "UDP/TLS/RTP/SAVPF 9")
        .replace("a=rtpmap:111 opus/48000/2\r\n", "")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "")
        .replace("a=rtpmap:8 PCMA/8000\r\n", "");
    let sent = w.send(A, SBC_A, invite_from_browser("call-wr2", &g722_only));
    response(&sent, A, 488);
    assert!(sent.iter().all(|(to, _)| *to != addr(B)), "nothing reaches the carrier");
    assert_eq!(w.ep.calls().media_counts(), Some((0, 0)), "no ports kept");
}

/// A call to a user registered over WSS: the relay terminates the browser's leg, so the user gets a WebRTC offer
/// and the caller a plain answer.
mod to_a_browser {
    use super::*;
    use crate::policy::digest::{Challenge, Client, Secret};
    use crate::registrar::{RegistrarConfig, User};
    use crate::transport::{ConnId, Peer};

    const SBC_A_WSS: &str = "198.18.1.1:8443";
    const BROWSER: &str = "198.18.1.60:51234";
    const USERS: TrunkId = TrunkId(3);

    fn browser() -> Peer {
        Peer { transport: Transport::Wss, local: addr(SBC_A_WSS), remote: addr(BROWSER), conn: Some(ConnId(7)) }
    }

    fn world() -> World {
        let media = relay_proto::session::MediaConfig {
            interfaces: vec![
                relay_proto::session::Interface { name: "a".into(), address: "198.18.1.1".parse().unwrap() },
                relay_proto::session::Interface { name: "b".into(), address: "198.18.2.1".parse().unwrap() },
            ],
            first_port: 40000,
            last_port: 40099,
            quarantine: Duration::from_secs(5),
            strict: true,
            cname_seed: 7,
            dtls_fingerprint: Some(relay_proto::webrtc::dtls::Fingerprint([0xAB; 32])),
        };
        world_configured(
            |t| t.push(Trunk::new("users")),
            |p| p.routes = PrefixTable::from_entries([("100", vec![Candidate::new(USERS, 1)])]).expect("prefixes"),
            Some(media),
            |c| {
                c.locals.push((Transport::Wss, addr(SBC_A_WSS)));
                c.registrar = Some(Arc::new(RegistrarConfig {
                    domains: vec!["198.18.1.1".into()],
                    realm: "198.18.1.1".into(),
                    users: vec![User { name: "1001".into(), password: Secret::new("pw1001") }],
                    trunk: USERS,
                    ..RegistrarConfig::default()
                }));
            },
        )
    }

    fn from_browser(w: &mut World, text: String) -> Vec<(SocketAddr, Message)> {
        w.ep.handle_message(w.now, browser(), Bytes::from(text));
        w.drain()
    }

    fn register(w: &mut World) {
        let text = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/WSS x7.invalid;branch=z9hG4bK-r{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1001@198.18.1.1>;tag=u1\r\nTo: <sip:1001@198.18.1.1>\r\n\
                 Call-ID: reg-1001\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:k3@x7.invalid;transport=ws>\r\n\
                 Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let sent = from_browser(w, text(1, ""));
        let ch = Challenge::parse(&rv(&response(&sent, BROWSER, 401), HeaderName::WwwAuthenticate)).expect("401");
        let auth = Client::new(ch, "1001", Secret::new("pw1001")).authorize("REGISTER", "sip:198.18.1.1", "cn");
        let sent = from_browser(w, text(2, &format!("Authorization: {auth}\r\n")));
        response(&sent, BROWSER, 200);
    }

    #[test]
    fn a_call_to_a_user_registered_over_wss_offers_webrtc_and_answers_the_caller_plain_rtp() {
        let mut w = world();
        register(&mut w);
        let sent = w.send(A, SBC_A, invite_from_a("call-wr3").replace("+493012345", "1001"));
        let inv = request(&sent, BROWSER, Method::Invite);
        let offer = String::from_utf8_lossy(&inv.body).into_owned();
        for needed in ["UDP/TLS/RTP/SAVPF 0", "a=setup:actpass", "a=ice-lite", "a=rtcp-mux", "a=fingerprint:sha-256"] {
            assert!(offer.contains(needed), "no {needed:?} in the offer to the browser:\n{offer}");
        }
        let answer_sdp = CHROMIUM_OFFER
            .replace("UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "UDP/TLS/RTP/SAVPF 0")
            .replace("a=setup:actpass", "a=setup:active");
        let ok = answer(&inv, 200, "u1", BROWSER, &answer_sdp);
        let sent = from_browser(&mut w, ok);
        let ok_a = response(&sent, A, 200);
        let to_caller = String::from_utf8_lossy(&ok_a.body).into_owned();
        assert!(to_caller.contains("m=audio 40000 RTP/AVP 0\r\n"), "{to_caller}");
        assert!(!to_caller.contains("ice") && !to_caller.contains("fingerprint"), "{to_caller}");
        let spec = w
            .media
            .iter()
            .find_map(|c| match c {
                Command::Webrtc(s) => Some(s.clone()),
                _ => None,
            })
            .expect("the browser leg's WebRTC spec");
        // The browser answered active: it is the DTLS client, the relay the server.
        assert_eq!(spec.role, relay_proto::webrtc::dtls::DtlsRole::Server);
        assert_eq!(spec.local.ip().to_string(), "198.18.1.1", "the browser leg is on interface a");
    }
}
