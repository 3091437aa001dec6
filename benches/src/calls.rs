//! The SIPp side of every call scenario (cps, concurrent, soak): the callee and caller of a [`CallPath`] with the
//! bench's own scenarios (benches/sipp/uac.xml, uas.xml), and what their runs report: post-dial delay and setup
//! time per call, the target's CPU.

use crate::target::{scenario, CallPath, Side};
use ::tests::sipp::Sipp;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// The RTP port the caller's SDP names (its RTP endpoint binds it on the caller's address).
pub const UAC_RTP_PORT: u16 = 7078;
/// The RTP port the callee's SDP names. Distinct from the caller's: on this host both may share one address.
pub const UAS_RTP_PORT: u16 = 7080;
/// SIPp binds a media port of its own (`-mp`, unused by the bench's scenarios): fixed in the harness's namespaces,
/// a free one on this host, where other programs (and another run of the harness) may hold any fixed port.
fn sipp_media_port(side: &Side, fixed: u16) -> u16 {
    if side.ns.is_some() {
        fixed
    } else {
        ::tests::free_port()
    }
}
/// What the caller dials: any number, the target routes it to the callee.
pub const DIALLED: &str = "+4930123456";

/// `USER_HZ`: the unit of utime and stime in /proc/PID/stat (100 on every Linux architecture in practice).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// SIPp's socket buffers: its default (`-buff_size` 65535) holds a few tens of milliseconds of responses at a few
/// thousand calls a second, and a generator that drops its own answers (its namespace's `RcvbufErrors`) measures
/// its own retransmissions, 500 ms each, as the target's post-dial delay.
const SIPP_SOCKET_BUFFER: &str = "4194304";

fn on(path: &CallPath, side: &Side, s: Sipp) -> Sipp {
    let s =
        s.local_ip(side.ip).local_port(side.port).transport(path.transport).arg("-buff_size").arg(SIPP_SOCKET_BUFFER);
    match &side.ns {
        Some(ns) => s.netns(ns),
        None => s,
    }
}

/// The callee of `path`: answers at once (180, 200 with SDP naming its RTP endpoint), room for `calls` calls.
pub fn uas(path: &CallPath, calls: u32, limit: Duration, core: Option<usize>) -> Sipp {
    let s = on(path, &path.uas, Sipp::new(&scenario("uas.xml")))
        .media_port(sipp_media_port(&path.uas, 27_000))
        .key("rtp_ip", &path.uas.ip.to_string())
        .key("rtp_port", &UAS_RTP_PORT.to_string())
        .calls(calls)
        .limit(limit);
    match core {
        Some(c) => s.cpu(c),
        None => s,
    }
}

/// The caller of `path`: `calls` calls at `rate` per second, each held `hold` after the answer, every call's
/// post-dial delay and setup time recorded (`-trace_rtt`, read by [`response_times`]). Files are kept: the caller
/// removes the run's directory.
pub fn uac(path: &CallPath, calls: u32, rate: u32, hold: Duration, limit: Duration, core: Option<usize>) -> Sipp {
    uac_running("uac.xml", path, calls, rate, hold, limit, core)
}

/// [`uac`] with another caller scenario of benches/sipp/ (`file`), which records the same response times.
pub fn uac_running(
    file: &str,
    path: &CallPath,
    calls: u32,
    rate: u32,
    hold: Duration,
    limit: Duration,
    core: Option<usize>,
) -> Sipp {
    let s = on(path, &path.uac, Sipp::new(&scenario(file)))
        .media_port(sipp_media_port(&path.uac, 26_000))
        .key("rtp_ip", &path.uac.ip.to_string())
        .key("rtp_port", &UAC_RTP_PORT.to_string())
        .target(path.to)
        .service(DIALLED)
        .calls(calls)
        .rate(rate)
        .pause(hold)
        .limit(limit)
        .keep_files(true)
        .arg("-l")
        .arg(&calls.to_string())
        .arg("-trace_rtt")
        .arg("-rtt_freq")
        .arg("1");
    match core {
        Some(c) => s.cpu(c),
        None => s,
    }
}

/// The response times of a caller's run, ms, one per call that got that far.
#[derive(Debug, Default, Clone)]
pub struct ResponseTimes {
    /// INVITE → the first 180, 183 or 200.
    pub pdd: Vec<f64>,
    /// INVITE → 200.
    pub setup: Vec<f64>,
}

/// Reads the `-trace_rtt` file SIPp wrote in its working directory (`<scenario>_<pid>_rtt.csv`:
/// `Date_ms;response_time_ms;rtd_name`). SIPp appends to it every `-rtt_freq` calls; a run still going has part of
/// it.
pub fn response_times(dir: &Path) -> Result<ResponseTimes> {
    let file = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_rtt.csv")));
    let Some(file) = file else {
        return Ok(ResponseTimes::default());
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(parse_rtt(&text))
}

/// The response times in `text`: lines of a `-trace_rtt` file, the whole file or the part appended since the last
/// read (the header line does not parse as a time and is skipped).
pub fn parse_rtt(text: &str) -> ResponseTimes {
    let mut out = ResponseTimes::default();
    for line in text.lines() {
        let mut cols = line.split(';');
        let (Some(time), Some(name)) = (cols.nth(1).and_then(|t| t.trim().parse::<f64>().ok()), cols.next()) else {
            continue;
        };
        match name.trim() {
            "pdd" => out.pdd.push(time),
            "setup" => out.setup.push(time),
            _ => {}
        }
    }
    out
}

pub use ::tests::procfs::cpu_ticks;

/// Every `(address, port)` of an audio stream in the SDP bodies of `log` (SIPp's message trace), without repeats,
/// in order of first appearance: for a target whose media addresses the harness does not know in advance.
pub fn sdp_audio_endpoints(log: &str) -> Vec<std::net::SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut conn: Option<std::net::IpAddr> = None;
    for line in log.lines() {
        let line = line.trim();
        if let Some(ip) = line.strip_prefix("c=IN IP4 ").or_else(|| line.strip_prefix("c=IN IP6 ")) {
            conn = ip.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("m=audio ") {
            let port = rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
            if let (Some(ip), Some(port)) = (conn, port) {
                let a = std::net::SocketAddr::new(ip, port);
                if seen.insert(a) {
                    out.push(a);
                }
            }
        } else if line.starts_with("v=0") {
            conn = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_file() {
        let t = parse_rtt("Date_ms;response_time_ms;rtd_no\n104.001;0;pdd\n108.001;4;setup\n;x;pdd\n1;2;other\n");
        assert_eq!((t.pdd, t.setup), (vec![0.0], vec![4.0]));
    }

    #[test]
    fn sdp_endpoints() {
        let log = "INVITE ...\nv=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 198.18.1.1\nm=audio 30000 RTP/AVP 0\n\
                   ----\nv=0\nc=IN IP4 198.18.1.1\nm=audio 30000 RTP/AVP 0\nv=0\nc=IN IP4 127.0.0.1\nm=audio 30002 RTP/AVP 0\n";
        assert_eq!(
            sdp_audio_endpoints(log),
            vec![
                "198.18.1.1:30000".parse::<std::net::SocketAddr>().unwrap(),
                "127.0.0.1:30002".parse::<std::net::SocketAddr>().unwrap()
            ]
        );
    }
}
