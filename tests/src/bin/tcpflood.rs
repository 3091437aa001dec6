//! A hostile TCP client the integration tests run inside a network namespace (`ip netns exec NS tcpflood ...`),
//! bounded in count and time, against the SBC only:
//!
//! - `tcpflood flood TARGET COUNT RATE HOLD_MS`: opens COUNT connections to TARGET, RATE per second, sends nothing
//!   and closes each after HOLD_MS. A connection the server resets or closes before that was refused at accept.
//! - `tcpflood slowloris TARGET COUNT RATE BYTE_EVERY_MS LIMIT_MS`: opens COUNT connections, RATE per second, and
//!   on each sends an INVITE one byte every BYTE_EVERY_MS (it would take far longer than LIMIT_MS to finish);
//!   gives up LIMIT_MS after the last connection was opened.
//!
//! Both print one JSON object: the counts, and for every connection the server closed, after how many
//! milliseconds (from its connect; for slowloris from its first byte, which is sent right after the connect).
//! Single-threaded with non-blocking sockets polled every 5 ms, so hundreds of connections need no threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(5);
/// Partial message sent by slowloris: a real INVITE start, so only the deadline can tell it from a slow peer.
const SLOW_MESSAGE: &[u8] = b"INVITE sip:+4930123456@198.18.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.2.11:5060;\
branch=z9hG4bKslow\r\nFrom: <sip:slow@198.18.2.11>;tag=slow\r\nTo: <sip:+4930123456@198.18.2.1>\r\nCall-ID: slow\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:slow@198.18.2.11:5060;transport=tcp>\r\nContent-Length: 0\r\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["flood", target, count, rate, hold] => {
            parse_common(target, count, rate).and_then(|c| Ok(run(c, Mode::Flood { hold: millis(hold)? })))
        }
        ["slowloris", target, count, rate, every, limit] => parse_common(target, count, rate)
            .and_then(|c| Ok(run(c, Mode::Slowloris { every: millis(every)?, limit: millis(limit)? }))),
        _ => {
            Err("usage: tcpflood flood TARGET COUNT RATE HOLD_MS | slowloris TARGET COUNT RATE BYTE_EVERY_MS LIMIT_MS"
                .to_owned())
        }
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcpflood: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Common {
    target: SocketAddr,
    count: usize,
    rate: u32,
}

#[derive(Clone, Copy)]
enum Mode {
    Flood { hold: Duration },
    Slowloris { every: Duration, limit: Duration },
}

fn parse_common(target: &str, count: &str, rate: &str) -> Result<Common, String> {
    let target = target.parse().map_err(|_| format!("bad target {target}"))?;
    let count = count.parse().map_err(|_| format!("bad count {count}"))?;
    let rate: u32 = rate.parse().map_err(|_| format!("bad rate {rate}"))?;
    if rate == 0 || count == 0 || count > 100_000 {
        return Err("count must be 1..=100000 and rate at least 1".to_owned());
    }
    Ok(Common { target, count, rate })
}

fn millis(s: &str) -> Result<Duration, String> {
    s.parse().map(Duration::from_millis).map_err(|_| format!("bad milliseconds {s}"))
}

struct Conn {
    sock: Option<TcpStream>,
    opened: Instant,
    sent: usize,
    next_byte: Instant,
}

/// How a connection ended.
enum End {
    /// The server closed or reset it after `after`.
    Closed(Duration),
    /// Still open when we closed it ourselves (flood: held; slowloris: still open at the limit).
    Held,
    /// connect() failed, with this error.
    ConnectFailed(String),
}

fn run(c: Common, mode: Mode) -> String {
    let start = Instant::now();
    let mut conns: Vec<Conn> = Vec::with_capacity(c.count);
    let mut ends: Vec<End> = Vec::with_capacity(c.count);
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        // Open the connections due by now, at most RATE per second since the start.
        let due = ((now - start).as_secs_f64() * f64::from(c.rate)) as usize + 1;
        while conns.len() + ends.len() < due.min(c.count) {
            match TcpStream::connect_timeout(&c.target, Duration::from_secs(1)) {
                Ok(sock) => {
                    let _ = sock.set_nonblocking(true);
                    let _ = sock.set_nodelay(true);
                    let t = Instant::now();
                    conns.push(Conn { sock: Some(sock), opened: t, sent: 0, next_byte: t });
                }
                // The server reset it before connect() returned: refused right at accept.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => ends.push(End::Closed(Duration::ZERO)),
                Err(e) => ends.push(End::ConnectFailed(e.to_string())),
            }
        }
        let now = Instant::now();
        for conn in &mut conns {
            let Some(sock) = conn.sock.as_mut() else { continue };
            let closed = match sock.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            if closed {
                ends.push(End::Closed(now - conn.opened));
                conn.sock = None;
                continue;
            }
            match mode {
                Mode::Flood { hold } if now - conn.opened >= hold => {
                    ends.push(End::Held);
                    conn.sock = None;
                }
                Mode::Slowloris { every, .. } if now >= conn.next_byte && conn.sent < SLOW_MESSAGE.len() => {
                    match sock.write(&SLOW_MESSAGE[conn.sent..=conn.sent]) {
                        Ok(n) => conn.sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => {
                            ends.push(End::Closed(now - conn.opened));
                            conn.sock = None;
                            continue;
                        }
                    }
                    conn.next_byte = now + every;
                }
                _ => {}
            }
        }
        conns.retain(|c| c.sock.is_some());
        let all_opened = conns.len() + ends.len() >= c.count;
        let give_up = match mode {
            Mode::Flood { .. } => false,
            Mode::Slowloris { limit, .. } => {
                all_opened && now - start >= Duration::from_secs_f64(c.count as f64 / f64::from(c.rate)) + limit
            }
        };
        if all_opened && (conns.is_empty() || give_up) {
            ends.extend(conns.drain(..).map(|_| End::Held));
            break;
        }
        std::thread::sleep(TICK);
    }
    report(&ends, start.elapsed())
}

fn report(ends: &[End], elapsed: Duration) -> String {
    let closed: Vec<u128> =
        ends.iter().filter_map(|e| if let End::Closed(d) = e { Some(d.as_millis()) } else { None }).collect();
    let held = ends.iter().filter(|e| matches!(e, End::Held)).count();
    let mut errors: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in ends {
        if let End::ConnectFailed(why) = e {
            *errors.entry(why.as_str()).or_default() += 1;
        }
    }
    let failed: usize = errors.values().sum();
    let errors = errors.iter().map(|(k, v)| format!("{:?}:{v}", k)).collect::<Vec<_>>().join(",");
    let list = closed.iter().map(u128::to_string).collect::<Vec<_>>().join(",");
    format!(
        "{{\"attempts\":{},\"connect_failed\":{failed},\"connect_errors\":{{{errors}}},\"held\":{held},\"closed\":{},\"elapsed_ms\":{},\"closed_after_ms\":[{list}]}}",
        ends.len(),
        closed.len(),
        elapsed.as_millis()
    )
}
