//! The CDR sink: one JSON line per call, appended to a file by a thread of its own, so that a slow or stalled
//! disk never holds up call handling (DESIGN.md principle 5).
//!
//! The driver hands records over through a bounded queue. When the queue is full the driver keeps the records in
//! a spill list and offers them again on its next turn; nothing is dropped. A write error keeps the writer's
//! records and retries once a second. On shutdown the driver closes the queue and waits for the writer to write
//! everything out. `sbc_cdr_*` metrics show the queue, the spill and the errors.

use metrics::{counter, gauge};
use sbc_proto::cdr::Cdr;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Records handed to the writer but not yet written.
const QUEUE: usize = 4096;

/// Where CDRs go.
#[derive(Debug)]
pub struct CdrSink {
    tx: Option<SyncSender<String>>,
    writer: Option<JoinHandle<()>>,
    spill: VecDeque<String>,
    /// Wall clock and monotonic clock read together, to turn the core's instants into times of day.
    anchor: (SystemTime, Instant),
}

impl CdrSink {
    /// Opens (creating it and its directory if needed) `path` for appending and starts the writer.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_owned();
        let writer = std::thread::Builder::new().name("cdr-writer".into()).spawn(move || write_loop(rx, file, path))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            spill: VecDeque::new(),
            anchor: (SystemTime::now(), Instant::now()),
        })
    }

    /// Queues one record; never blocks.
    pub fn record(&mut self, cdr: &Cdr) {
        let line = to_json(cdr, self.anchor);
        self.spill.push_back(line);
        self.offer();
    }

    /// Hands spilled records to the writer while it takes them.
    pub fn offer(&mut self) {
        let Some(tx) = &self.tx else { return };
        while let Some(line) = self.spill.pop_front() {
            match tx.try_send(line) {
                Ok(()) => gauge!("sbc_cdr_queued").increment(1.0),
                Err(TrySendError::Full(line)) => {
                    counter!("sbc_cdr_spilled_total").increment(1);
                    self.spill.push_front(line);
                    break;
                }
                Err(TrySendError::Disconnected(line)) => {
                    // The writer died (it never should): keep the record for the shutdown flush.
                    self.spill.push_front(line);
                    break;
                }
            }
        }
        gauge!("sbc_cdr_spill").set(self.spill.len() as f64);
    }

    /// Records waiting in the spill list.
    pub fn spilled(&self) -> usize {
        self.spill.len()
    }

    /// Writes everything out and stops the writer (clean shutdown): blocks until done.
    pub fn close(mut self) {
        if let Some(tx) = self.tx.take() {
            for line in self.spill.drain(..) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(rx: Receiver<String>, mut file: File, path: PathBuf) {
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut closed = false;
    while !(closed && pending.is_empty()) {
        if !closed {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    gauge!("sbc_cdr_queued").decrement(1.0);
                    pending.push_back(line);
                    while let Ok(line) = rx.try_recv() {
                        gauge!("sbc_cdr_queued").decrement(1.0);
                        pending.push_back(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
        }
        if pending.is_empty() {
            continue;
        }
        let mut buf = String::new();
        for l in &pending {
            buf.push_str(l);
            buf.push('\n');
        }
        match file.write_all(buf.as_bytes()).and_then(|()| file.flush()) {
            Ok(()) => {
                counter!("sbc_cdr_written_total").increment(pending.len() as u64);
                pending.clear();
            }
            Err(e) => {
                // Keep the records and try again; a partial line may be left, which a reader skips as invalid
                // JSON, and the whole record follows it.
                counter!("sbc_cdr_write_errors_total").increment(1);
                tracing::error!(path = %path.display(), error = %e, records = pending.len(), "CDR write failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
                if closed && e.kind() != std::io::ErrorKind::Interrupted {
                    // At shutdown with a dead disk: say what is lost rather than hang for ever.
                    tracing::error!(records = pending.len(), "CDRs could not be written at shutdown");
                    for l in &pending {
                        eprintln!("cdr-unwritten: {l}");
                    }
                    return;
                }
            }
        }
    }
}

fn wall(anchor: (SystemTime, Instant), at: Instant) -> String {
    let t = if at >= anchor.1 { anchor.0 + (at - anchor.1) } else { anchor.0 - (anchor.1 - at) };
    humantime::format_rfc3339_millis(t).to_string()
}

/// One CDR as a JSON object.
pub fn to_json(c: &Cdr, anchor: (SystemTime, Instant)) -> String {
    let attempts: Vec<_> = c
        .attempts
        .iter()
        .map(|a| serde_json::json!({ "trunk": a.trunk, "call_id": a.call_id, "status": a.status }))
        .collect();
    serde_json::json!({
        "a_call_id": c.a_call_id,
        "b_call_id": c.b_call_id,
        "trunk_in": c.trunk_in,
        "trunk_out": c.trunk_out,
        "caller": c.caller,
        "called_in": c.called_in,
        "called_out": c.called_out,
        "route_prefix": c.route_prefix,
        "attempts": attempts,
        "setup": wall(anchor, c.setup),
        "ringing": c.ringing.map(|t| wall(anchor, t)),
        "answer": c.answer.map(|t| wall(anchor, t)),
        "end": wall(anchor, c.end),
        "duration_s": c.duration(),
        "post_dial_delay_s": c.post_dial_delay(),
        "status": c.status,
        "release_cause": c.release_cause,
        "released_by": c.released_by,
        "media": c.media.map(|m| serde_json::json!({ "a": m.legs[0], "b": m.legs[1] })),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdr(n: usize) -> Cdr {
        let t = Instant::now();
        Cdr {
            a_call_id: format!("a-{n}"),
            b_call_id: Some(format!("b-{n}")),
            trunk_in: "customer-pbx".into(),
            trunk_out: Some("carrier-b".into()),
            caller: "+4940111".into(),
            called_in: "+493012345".into(),
            called_out: "+493012345".into(),
            route_prefix: Some(String::new()),
            attempts: vec![],
            setup: t,
            ringing: None,
            answer: Some(t + Duration::from_millis(300)),
            end: t + Duration::from_secs(5),
            status: 200,
            release_cause: "bye",
            released_by: "a",
            media_session: None,
            media: None,
        }
    }

    #[test]
    fn every_record_is_written_once_even_past_the_queue_size() {
        let dir = std::env::temp_dir().join(format!("sbc-cdr-test-{}", std::process::id()));
        let path = dir.join("cdr.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut sink = CdrSink::open(&path).expect("open");
        let n = QUEUE * 3;
        for i in 0..n {
            sink.record(&cdr(i));
        }
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), n, "none lost, none doubled");
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(first["a_call_id"], "a-0");
        assert!((first["duration_s"].as_f64().expect("duration") - 4.7).abs() < 0.01);
        assert_eq!(lines.last().map(|l| l.contains(&format!("a-{}", n - 1))), Some(true));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
