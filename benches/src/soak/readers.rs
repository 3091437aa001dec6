//! What `soak` reads from its caller's files as they grow: the cumulative counters of the last complete line of
//! SIPp's stat CSV, and the response times appended to its `-trace_rtt` CSV since the last read.

use crate::calls::{self, ResponseTimes};
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Cumulative counters of the caller, from one line of SIPp's stat CSV.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Calls placed (`OutgoingCall(C)`).
    pub(super) attempted: u64,
    /// Calls that completed: answered, held, hung up with a 200 to the BYE (`SuccessfulCall(C)`).
    pub(super) answered: u64,
    /// Calls that failed (`FailedCall(C)`): an error response, a timeout, an unexpected message.
    pub(super) failed: u64,
    /// Calls in progress (`CurrentCall`, not cumulative).
    pub(super) in_progress: u64,
    /// Retransmissions the caller sent (`Retransmissions(C)`).
    pub(super) retransmissions: u64,
}

impl Counts {
    /// Reads the counters from a stat CSV `line` whose columns `header` names; `None` for a line that does not fit.
    fn parse(header: &[String], line: &str) -> Option<Self> {
        let values: Vec<&str> = line.split(';').collect();
        if values.len() < header.len() {
            return None;
        }
        let get = |name: &str| -> Option<u64> { values[header.iter().position(|h| h == name)?].trim().parse().ok() };
        Some(Self {
            attempted: get("OutgoingCall(C)")?,
            answered: get("SuccessfulCall(C)")?,
            failed: get("FailedCall(C)")?,
            in_progress: get("CurrentCall")?,
            retransmissions: get("Retransmissions(C)").unwrap_or(0),
        })
    }

    /// What happened between `earlier` and `self` (both cumulative); `in_progress` is `self`'s.
    pub(super) fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            attempted: self.attempted.saturating_sub(earlier.attempted),
            answered: self.answered.saturating_sub(earlier.answered),
            failed: self.failed.saturating_sub(earlier.failed),
            in_progress: self.in_progress,
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
        }
    }

    /// Calls placed that have neither completed nor failed.
    pub(super) fn unfinished(&self) -> u64 {
        self.attempted.saturating_sub(self.answered + self.failed)
    }
}

/// The last complete line (ending in a newline) of `text`, without the newline.
fn last_complete_line(text: &str) -> Option<&str> {
    let body = &text[..text.rfind('\n')?];
    let line = body.rsplit('\n').next()?;
    (!line.trim().is_empty()).then_some(line)
}

/// The caller's stat CSV, read from its end.
#[derive(Debug)]
pub(super) struct StatTail {
    path: PathBuf,
    header: Vec<String>,
}

impl StatTail {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, header: Vec::new() }
    }

    /// The counters of the last complete line; `None` before SIPp wrote one.
    pub(super) fn last(&mut self) -> Option<Counts> {
        if self.header.is_empty() {
            let mut first = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(std::fs::File::open(&self.path).ok()?),
                &mut first,
            )
            .ok()?;
            if !first.ends_with('\n') {
                return None;
            }
            self.header = first.trim_end().split(';').map(str::to_owned).collect();
        }
        let mut file = std::fs::File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        // A line is about 550 bytes; 64 KiB always holds the last complete one.
        let from = len.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(from)).ok()?;
        let mut text = String::new();
        file.take(len - from).read_to_string(&mut text).ok()?;
        Counts::parse(&self.header, last_complete_line(&text)?)
    }
}

/// The caller's `-trace_rtt` CSV (`Date_ms;response_time_ms;rtd_name`), read incrementally: every call what SIPp
/// appended since the last read, complete lines only.
#[derive(Debug)]
pub(super) struct RttTail {
    dir: PathBuf,
    file: Option<PathBuf>,
    offset: u64,
}

impl RttTail {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir, file: None, offset: 0 }
    }

    pub(super) fn read_new(&mut self) -> Result<ResponseTimes> {
        if self.file.is_none() {
            self.file = std::fs::read_dir(&self.dir)
                .with_context(|| format!("listing {}", self.dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_rtt.csv")));
        }
        let Some(path) = &self.file else {
            return Ok(ResponseTimes::default());
        };
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(calls::parse_rtt(&String::from_utf8_lossy(&bytes[..complete])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::tests::counts;

    #[test]
    fn stat_lines_give_cumulative_counts() {
        let header: Vec<String> =
            "StartTime;OutgoingCall(C);CurrentCall;SuccessfulCall(C);FailedCall(C);Retransmissions(C)"
                .split(';')
                .map(Into::into)
                .collect();
        let text = "StartTime;...\nx;4;4;0;0;0\nx;10;6;4;0;2\nx;12;5";
        let line = last_complete_line(text).unwrap();
        assert_eq!(Counts::parse(&header, line), Some(Counts { retransmissions: 2, ..counts(10, 4, 0, 6) }));
        assert_eq!(last_complete_line("no newline yet"), None);
        assert_eq!(Counts::parse(&header, "x;12;5"), None);
    }
}
