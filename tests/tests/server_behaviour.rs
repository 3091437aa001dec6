//! The `sbc` binary as an operator meets it: config checking, linting captures, bad input, clean shutdown.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;
use tests::{repo_root, sbc_binary, Sbc};

fn sbc(args: &[&str]) -> std::process::Output {
    Command::new(sbc_binary().expect("sbc built")).args(args).current_dir(repo_root()).output().expect("runs")
}

#[test]
fn check_config_accepts_the_default_and_names_key_and_line_of_errors() {
    let ok = sbc(&["check-config", "config/sbc.toml"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let dir = std::env::temp_dir().join(format!("sbc-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[sip]\nlisten = [\"udp:127.0.0.1:5060\",\n  \"udp:nowhere\"]\n").expect("write");
    let out = sbc(&["check-config", bad.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:3: sip.listen[1]"), "{err}");
    std::fs::write(&bad, "[sip]\nlisten = []\n[apii]\n").expect("write");
    let err = String::from_utf8_lossy(&sbc(&["check-config", bad.to_str().expect("utf8")]).stderr).into_owned();
    assert!(err.contains("bad.toml:3:") && err.contains("apii"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lint_sip_passes_valid_captures_and_fails_malformed_ones_with_the_line() {
    let corpus = repo_root().join("../shared/corpus/rfc4475");
    assert!(corpus.is_dir(), "RFC 4475 corpus missing at {}", corpus.display());
    let good = corpus.join("valid/wsinv.sip");
    let bad = corpus.join("invalid/badinv01.sip");
    let out = sbc(&["lint-sip", good.to_str().expect("utf8")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (request INVITE"));
    let out = sbc(&["lint-sip", good.to_str().expect("utf8"), bad.to_str().expect("utf8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("badinv01.sip:7: malformed Via header"), "{text}");
}

#[test]
fn malformed_request_over_udp_gets_400_with_a_warning_and_is_counted() {
    let sbc = Sbc::start("malformed", "").expect("sbc starts");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let local = sock.local_addr().expect("addr");
    let msg = format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad1;rport\r\nFrom: <sip:t@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: bad1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), sbc.sip).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer within 5 s");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"), "{resp}");
    assert!(
        resp.contains("Warning: 399 sbc \"line 6 (byte ")
            && resp.contains("CSeq method differs from the request method"),
        "{resp}"
    );
    // Garbage that is not even a request: counted, not answered, and the SBC carries on.
    sock.send_to(b"\x16\x03\x01 this is not SIP\r\n\r\n", sbc.sip).expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let errors = sbc.metric("sbc_sip_parse_errors_total{transport=\"udp\"").expect("metrics");
    assert_eq!(errors, 2.0);
    assert_eq!(sbc.http_get("/health").expect("alive").trim(), "ok");
}

#[test]
fn control_characters_bad_utf8_and_untyped_bodies_get_400_naming_them_and_are_counted_by_reason() {
    let sbc = Sbc::start("strict", "").expect("sbc starts");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let local = sock.local_addr().expect("addr");
    let head = |call: &str| {
        format!(
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call};rport\r\n\
             From: <sip:t@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n"
        )
        .into_bytes()
    };
    let cases: [(&str, &[u8], &str, &str); 3] = [
        (
            "nul",
            b"Subject: a\0b\r\nContent-Length: 0\r\n\r\n",
            "control character 0x00 in the Subject header",
            "control_character",
        ),
        (
            "latin1",
            b"User-Agent: Caf\xe9\r\nContent-Length: 0\r\n\r\n",
            "User-Agent header is not valid UTF-8",
            "not_utf8",
        ),
        (
            "untyped",
            b"Content-Length: 5\r\n\r\nv=0\r\n",
            "non-empty body without Content-Type",
            "body_without_content_type",
        ),
    ];
    for (call, tail, warning, reason) in cases {
        sock.send_to(&[head(call), tail.to_vec()].concat(), sbc.sip).expect("send");
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer within 5 s");
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(resp.starts_with("SIP/2.0 400 Bad Request\r\n"), "{resp}");
        assert!(resp.contains(&format!("Call-ID: {call}\r\n")) && resp.contains(warning), "{resp}");
        let metric = format!("sbc_sip_parse_errors_total{{transport=\"udp\",reason=\"{reason}\"}}");
        assert_eq!(sbc.metric(&metric).expect("metrics"), 1.0, "{metric}");
    }
    // A clean OPTIONS still gets its 200: nothing was left in a bad state.
    sock.send_to(&[head("clean"), b"Content-Length: 0\r\n\r\n".to_vec()].concat(), sbc.sip).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer within 5 s");
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
}

#[test]
fn tcp_connection_sending_an_oversized_message_is_closed_and_others_carry_on() {
    let sbc = Sbc::start("tcp-oversize", "").expect("sbc starts");
    let mut s = TcpStream::connect(sbc.sip).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"OPTIONS sip:x@h SIP/2.0\r\nContent-Length: 900000\r\n\r\n").expect("write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed without an answer");
    let errors = sbc.metric("sbc_sip_parse_errors_total{transport=\"tcp\",reason=\"too_large\"").expect("metrics");
    assert_eq!(errors, 1.0);
    let mut s = TcpStream::connect(sbc.sip).expect("connect again");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let local = s.local_addr().expect("addr");
    s.write_all(format!(
        "\r\n\r\nOPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nFrom: <sip:t@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).as_bytes()).expect("write");
    // The keep-alive ping before the request is answered with its pong (RFC 5626 §4.4.1), then comes the answer.
    let mut resp = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).expect("answer");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&resp));
        resp.extend_from_slice(&chunk[..n]);
    }
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("\r\nSIP/2.0 200 OK"), "{resp:?}");
}

#[test]
fn sigterm_stops_the_sbc_cleanly() {
    let mut sbc = Sbc::start("sigterm", "").expect("sbc starts");
    assert!(sbc.is_running());
    let clean = sbc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(clean, "exit status 0 after SIGTERM; log:\n{}", sbc.log_tail());
    assert!(sbc.log_tail().contains("stopped"), "{}", sbc.log_tail());
}
