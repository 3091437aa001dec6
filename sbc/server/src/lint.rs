//! `sbc lint-sip FILE...`: parse captured messages and say what is wrong with them, where.

use bytes::Bytes;
use sbc_proto::msg::{parse_datagram, Message};
use std::io::Write;
use std::path::PathBuf;

/// Lints each file as one SIP message; writes one line per file to `out` and returns how many were malformed or
/// unreadable.
pub fn lint_files(files: &[PathBuf], out: &mut impl Write) -> std::io::Result<usize> {
    let mut bad = 0;
    for path in files {
        let name = path.display();
        let raw = match std::fs::read(path) {
            Ok(r) => r,
            Err(e) => {
                bad += 1;
                writeln!(out, "{name}: cannot read: {e}")?;
                continue;
            }
        };
        match parse_datagram(Bytes::from(raw)) {
            Ok(Message::Request(r)) => writeln!(
                out,
                "{name}: OK (request {}, {} header values, body {} bytes)",
                r.method,
                r.headers.len(),
                r.body.len()
            )?,
            Ok(Message::Response(r)) => writeln!(
                out,
                "{name}: OK (response {}, {} header values, body {} bytes)",
                r.status,
                r.headers.len(),
                r.body.len()
            )?,
            Err(e) => {
                bad += 1;
                writeln!(out, "{name}:{}: {} (byte offset {})", e.line, e.kind, e.offset)?;
            }
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_ok_and_errors_with_line() {
        let dir = std::env::temp_dir().join(format!("sbc-lint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let good = dir.join("good.sip");
        let bad_f = dir.join("bad.sip");
        std::fs::write(
            &good,
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        )
        .expect("write");
        std::fs::write(&bad_f, "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nbroken line\r\n\r\n").expect("write");
        let mut out = Vec::new();
        let n = lint_files(&[good.clone(), bad_f.clone(), dir.join("missing.sip")], &mut out).expect("io");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(n, 2, "{text}");
        assert!(text.contains("good.sip: OK (request OPTIONS"), "{text}");
        assert!(text.contains("bad.sip:3: malformed header line"), "{text}");
        assert!(text.contains("missing.sip: cannot read"), "{text}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn control_characters_bad_utf8_and_untyped_bodies_are_malformed() {
        let dir = std::env::temp_dir().join(format!("sbc-lint-strict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let head = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n\
To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        let cases: [(&str, &[u8]); 4] = [
            ("nul.sip", b"Subject: a\0b\r\n\r\n"),
            ("esc.sip", b"User-Agent: x\r\n  \x1b[2J\r\n\r\n"),
            ("latin1.sip", b"Organization: Caf\xe9\r\n\r\n"),
            ("untyped.sip", b"Content-Length: 4\r\n\r\nv=0\n"),
        ];
        let files: Vec<PathBuf> = cases
            .iter()
            .map(|(name, tail)| {
                let path = dir.join(name);
                std::fs::write(&path, [&head[..], tail].concat()).expect("write");
                path
            })
            .collect();
        let mut out = Vec::new();
        let n = lint_files(&files, &mut out).expect("io");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(n, 4, "all four are malformed: {text}");
        for want in [
            "nul.sip:7: control character 0x00 in the Subject header",
            "esc.sip:7: control character 0x1B in the User-Agent header",
            "latin1.sip:7: Organization header is not valid UTF-8",
            "untyped.sip:9: non-empty body without Content-Type",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
