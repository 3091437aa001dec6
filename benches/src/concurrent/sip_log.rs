//! What `concurrent` reads from SIPp while the calls run: the message logs (`-trace_msg`, read as they grow:
//! which calls are up and where each call's media goes, from the SDP the other side sent) and the caller's stat
//! file (counters, its age, the peak of calls in progress); and the last lines of SIPp's files for error messages.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which side of the calls a message log is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The UAC: a call is up when a 200 to its INVITE with SDP arrived.
    Caller,
    /// The UAS: a call is up (for the media) when its INVITE with SDP arrived.
    Callee,
}

/// What a SIPp message log (`-trace_msg`) said so far, read as it grows.
#[derive(Debug)]
pub(super) struct MessageLog {
    path: PathBuf,
    role: Role,
    offset: u64,
    /// The text from the last message separator on: a message possibly still being written (parsed again with
    /// every poll; what it adds is keyed by Call-ID, so parsing twice is harmless).
    tail: String,
    /// Per call, in order of answer: where this side's media goes (the SDP the other side sent).
    pub(super) endpoints: Vec<SocketAddr>,
    up: HashSet<String>,
    ended: HashSet<String>,
    /// Calls answered when the first BYE went out or came in.
    pub(super) answered_at_first_bye: Option<u64>,
}

/// The line SIPp writes before every message.
const SEPARATOR: &str = "-----------------------------------------------";

impl MessageLog {
    pub(super) fn new(path: PathBuf, role: Role) -> Self {
        Self {
            path,
            role,
            offset: 0,
            tail: String::new(),
            endpoints: Vec::new(),
            up: HashSet::new(),
            ended: HashSet::new(),
            answered_at_first_bye: None,
        }
    }

    /// Reads what was appended since the last call.
    pub(super) fn update(&mut self) -> Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new).with_context(|| format!("reading {}", self.path.display()))?;
        self.offset += new.len() as u64;
        self.feed(&String::from_utf8_lossy(&new));
        Ok(())
    }

    /// Parses `text`, appended to what came before.
    fn feed(&mut self, text: &str) {
        self.tail.push_str(text);
        let tail = std::mem::take(&mut self.tail);
        let mut starts: Vec<usize> = tail.match_indices(SEPARATOR).map(|(i, _)| i).collect();
        // A separator starts a line.
        starts.retain(|&i| i == 0 || tail.as_bytes()[i - 1] == b'\n');
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(tail.len());
            self.message(&tail[start..end]);
        }
        self.tail = match starts.last() {
            Some(&last) => tail[last..].to_owned(),
            None => tail,
        };
    }

    fn message(&mut self, text: &str) {
        let Some(msg) = Message::parse(text) else {
            return;
        };
        let Some(call_id) = msg.call_id else {
            return;
        };
        let answers = match self.role {
            Role::Caller => msg.received && msg.start.starts_with("SIP/2.0 200") && msg.cseq_method == "INVITE",
            Role::Callee => msg.received && msg.start.starts_with("INVITE "),
        };
        if answers {
            if let Some(endpoint) = msg.audio {
                if self.up.insert(call_id.to_owned()) {
                    self.endpoints.push(endpoint);
                }
            }
        } else if msg.start.starts_with("BYE ") {
            self.answered_at_first_bye.get_or_insert(self.up.len() as u64);
            self.ended.insert(call_id.to_owned());
        }
    }

    /// Calls answered so far.
    pub(super) fn answered(&self) -> u64 {
        self.up.len() as u64
    }

    /// Calls answered and not ended.
    pub(super) fn up(&self) -> u64 {
        self.up.iter().filter(|c| !self.ended.contains(*c)).count() as u64
    }
}

/// One message of a SIPp message log.
#[derive(Debug, PartialEq)]
struct Message<'a> {
    received: bool,
    /// The request or status line.
    start: &'a str,
    call_id: Option<&'a str>,
    cseq_method: &'a str,
    /// The first audio stream of its SDP body.
    audio: Option<SocketAddr>,
}

impl<'a> Message<'a> {
    /// `text` from the separator line on: the separator, `UDP message sent (N bytes):` or `UDP message received
    /// [N] bytes :`, an empty line, then the N bytes of the message. `None` while fewer than N bytes are there
    /// (SIPp is still writing it) or if it is not a message.
    fn parse(text: &'a str) -> Option<Self> {
        let (_separator, rest) = text.split_once('\n')?;
        let (what, rest) = rest.split_once('\n')?;
        let received = what.contains("message received");
        if !received && !what.contains("message sent") {
            return None;
        }
        let size = what.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).and_then(|n| n.parse().ok());
        let rest = rest.strip_prefix('\n').unwrap_or(rest);
        let msg = match size {
            Some(n) => rest.get(..n)?,
            None => rest,
        };
        let mut lines = msg.lines().map(str::trim);
        let start = lines.by_ref().find(|l| !l.is_empty())?;
        let (mut call_id, mut cseq_method) = (None, "");
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("Call-ID") || name == "i" {
                call_id = Some(value.trim());
            } else if name.eq_ignore_ascii_case("CSeq") {
                cseq_method = value.split_whitespace().nth(1).unwrap_or("");
            }
        }
        Some(Self { received, start, call_id, cseq_method, audio: sdp_audio(lines) })
    }
}

/// The first audio stream of an SDP body, as the relay reads SDP ([`relay_proto::sdp::parse`]: the media-level
/// `c=` line if it has one, else the session-level one). `None` without one, for an SDP that does not parse, or for
/// a held or rejected stream (address 0.0.0.0, port 0).
fn sdp_audio<'a>(lines: impl Iterator<Item = &'a str>) -> Option<SocketAddr> {
    let body: String = lines.flat_map(|l| [l, "\r\n"]).collect();
    let audio = relay_proto::sdp::parse(body.as_bytes()).ok()?.into_iter().find(|m| m.kind == "audio")?;
    let addr = SocketAddr::new(audio.address?, audio.port);
    (!audio.hold_address && !addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}

/// The caller's SIPp counters from the last complete line of its stat file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stat {
    pub(super) successful: u64,
    pub(super) failed: u64,
}

pub(super) fn read_stat(dir: &Path) -> Option<Stat> {
    let text = std::fs::read_to_string(dir.join("stat.csv")).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    // The last line may be half written: take the last one that ends with a newline.
    let complete = &text[..text.rfind('\n')?];
    let last: Vec<&str> = complete.lines().rfind(|l| !l.trim().is_empty())?.split(';').collect();
    if last.len() < header.len() {
        return None;
    }
    let col = |name: &str| header.iter().position(|h| *h == name).and_then(|i| last[i].trim().parse::<u64>().ok());
    Some(Stat { successful: col("SuccessfulCall(C)")?, failed: col("FailedCall(C)")? })
}

/// How long ago SIPp last wrote its stat file.
pub(super) fn stat_age(dir: &Path) -> Option<Duration> {
    std::fs::metadata(dir.join("stat.csv")).ok()?.modified().ok()?.elapsed().ok()
}

/// The largest `CurrentCall` over every line of a SIPp stat file.
pub(super) fn peak_current_calls(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("stat.csv")).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let i = lines.next()?.split(';').position(|h| h == "CurrentCall")?;
    lines.filter_map(|l| l.split(';').nth(i)?.trim().parse::<u64>().ok()).max()
}

/// The last lines of files in a SIPp directory, for error messages.
pub(super) fn tail_of(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!("[{name}] {}", lines[lines.len().saturating_sub(5)..].join(" | "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of a SIPp message log as SIPp writes it: separator, direction and size, the message with CRLFs.
    fn entry(received: bool, msg: &str) -> String {
        let msg = msg.replace('\n', "\r\n");
        let what = if received {
            format!("UDP message received [{}] bytes :", msg.len())
        } else {
            format!("UDP message sent ({} bytes):", msg.len())
        };
        format!("{SEPARATOR} 2026-12-01 02:48:18.352526\n{what}\n\n{msg}\n\n")
    }

    fn uac_log() -> String {
        [
            entry(
                false,
                "INVITE sip:123@198.18.1.1:5060 SIP/2.0\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\n\
                 Content-Type: application/sdp\n\nv=0\no=- 1 1 IN IP4 198.18.1.10\ns=-\nc=IN IP4 198.18.1.10\nt=0 0\n\
                 m=audio 7078 RTP/AVP 0 8 101\n",
            ),
            entry(true, "SIP/2.0 180 Ringing\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\nContent-Length: 0\n\n"),
            entry(
                true,
                "SIP/2.0 200 OK\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\nContent-Type: application/sdp\n\n\
                 v=0\no=- 98611 1 IN IP4 198.18.1.1\ns=-\nc=IN IP4 198.18.1.1\nt=0 0\nm=audio 30000 RTP/AVP 0 101\n",
            ),
            // Compact Call-ID; held session-level address, the media-level one wins; a video stream after it.
            entry(
                true,
                "SIP/2.0 200 OK\ni: 2-9865@198.18.1.10\nCSeq: 1 INVITE\n\nv=0\no=- 2 1 IN IP4 198.18.1.1\ns=-\n\
                 c=IN IP4 0.0.0.0\nt=0 0\nm=audio 30002 RTP/AVP 0\nc=IN IP4 198.18.1.1\nm=video 30004 RTP/AVP 96\nc=IN IP4 198.18.1.9\n",
            ),
        ]
        .concat()
    }

    #[test]
    fn message_log_yields_each_answered_calls_media_address_once_even_when_read_in_pieces() {
        let log = uac_log();
        let expected: Vec<SocketAddr> = vec!["198.18.1.1:30000".parse().unwrap(), "198.18.1.1:30002".parse().unwrap()];
        let mut whole = MessageLog::new(PathBuf::new(), Role::Caller);
        whole.feed(&log);
        // The last message counts as soon as all its bytes are there, before the next separator.
        assert_eq!(whole.endpoints, expected);
        for cut in (1..log.len()).step_by(7) {
            let mut pieces = MessageLog::new(PathBuf::new(), Role::Caller);
            pieces.feed(&log[..cut]);
            let partial = pieces.endpoints.clone();
            assert!(expected.starts_with(&partial), "cut at {cut}: {partial:?}");
            pieces.feed(&log[cut..]);
            // Another 200 for a call already up (a retransmission) adds nothing: the first address stays.
            pieces.feed(&entry(
                true,
                "SIP/2.0 200 OK\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\n\nv=0\no=- 3 1 IN IP4 198.18.1.7\ns=-\n\
                 c=IN IP4 198.18.1.7\nt=0 0\nm=audio 31000 RTP/AVP 0\n",
            ));
            assert_eq!(pieces.endpoints, expected, "cut at {cut}");
        }
        assert_eq!((whole.answered(), whole.up()), (2, 2));
        whole.feed(&entry(false, "BYE sip:a SIP/2.0\nCall-ID: 1-9865@198.18.1.10\nCSeq: 2 BYE\n\n"));
        assert_eq!((whole.answered(), whole.up(), whole.answered_at_first_bye), (2, 1, Some(2)));
        // The callee counts INVITEs it received, with the caller-side address the target's SDP names.
        let mut callee = MessageLog::new(PathBuf::new(), Role::Callee);
        callee.feed(&log.replace("message sent (", "message received ("));
        assert_eq!(callee.endpoints, vec!["198.18.1.10:7078".parse::<std::net::SocketAddr>().unwrap()]);
    }

    #[test]
    fn sdp_audio_endpoint() {
        // Session-level c= (or none), then the media sections.
        let sdp = |session_c: &str, media: &str| {
            sdp_audio(format!("v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\n{session_c}t=0 0\n{media}").lines())
        };
        assert_eq!(sdp("c=IN IP4 10.0.0.1\n", "m=audio 4000 RTP/AVP 0"), Some("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(sdp("c=IN IP6 ::1\n", "m=audio 4000 RTP/AVP 0"), Some("[::1]:4000".parse().unwrap()));
        assert_eq!(
            sdp("", "m=video 5000 RTP/AVP 96\nc=IN IP4 10.0.0.2\nm=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.3"),
            Some("10.0.0.3:4000".parse().unwrap())
        );
        assert_eq!(sdp("c=IN IP4 10.0.0.1\n", "m=audio 0 RTP/AVP 0"), None, "rejected");
        assert_eq!(sdp("c=IN IP4 0.0.0.0\n", "m=audio 4000 RTP/AVP 0"), None, "held");
        assert_eq!(sdp("", "m=audio 4000 RTP/AVP 0"), None, "no address");
        assert_eq!(sdp_audio("".lines()), None, "no body");
    }

    #[test]
    fn stat_file_counters_and_peak() {
        let dir = std::env::temp_dir().join(format!("concurrent-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat.csv"),
            "StartTime;CurrentCall;SuccessfulCall(C);FailedCall(C)\nx;5;0;0\nx;200;0;1\nx;150;50;1\nx;12",
        )
        .unwrap();
        assert_eq!(read_stat(&dir), Some(Stat { successful: 50, failed: 1 }), "the half-written line is skipped");
        assert_eq!(peak_current_calls(&dir), Some(200));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
