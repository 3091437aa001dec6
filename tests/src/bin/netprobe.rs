//! A tiny network probe the integration tests run inside network namespaces (`ip netns exec NS netprobe ...`), so
//! they need no tools beyond iproute2:
//!
//! - `netprobe udp-echo ADDR TIMEOUT_MS`: binds ADDR, echoes the first datagram back to its sender, exits 0; exits
//!   1 if none arrives within TIMEOUT_MS.
//! - `netprobe udp-ping LOCAL_IP TARGET TIMEOUT_MS`: from LOCAL_IP, sends a datagram to TARGET every 100 ms until the
//!   same bytes come back from TARGET; prints `reply from TARGET` and exits 0, or exits 1 after TIMEOUT_MS.
//! - `netprobe http-get ADDR PATH`: HTTP/1.0 GET; prints the body and exits 0 on status 200, else 1.
//! - `netprobe tcp-sink ADDR DURATION_MS`: accepts TCP connections on ADDR and reads whatever they send, for
//!   DURATION_MS; prints the bytes read and exits 0.
//! - `netprobe udp-sink ADDR DURATION_MS`: binds ADDR and reads datagrams for DURATION_MS (so senders get no ICMP
//!   port unreachable); prints how many and exits 0.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["udp-echo", addr, ms] => udp_echo(addr, ms),
        ["udp-ping", local, target, ms] => udp_ping(local, target, ms),
        ["http-get", addr, path] => http_get(addr, path),
        ["tcp-sink", addr, ms] => tcp_sink(addr, ms),
        ["udp-sink", addr, ms] => udp_sink(addr, ms),
        _ => Err(
            "usage: netprobe udp-echo ADDR MS | udp-ping LOCAL_IP TARGET MS | http-get ADDR PATH | tcp-sink ADDR MS \
             | udp-sink ADDR MS"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netprobe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what}: {s}"))
}

fn udp_echo(addr: &str, ms: &str) -> Result<(), String> {
    let addr: SocketAddr = parse("address", addr)?;
    let timeout = Duration::from_millis(parse("timeout", ms)?);
    let sock = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).map_err(|e| format!("nothing received on {addr}: {e}"))?;
    sock.send_to(&buf[..n], from).map_err(|e| format!("echo to {from}: {e}"))?;
    println!("echoed {n} bytes to {from}");
    Ok(())
}

fn udp_ping(local: &str, target: &str, ms: &str) -> Result<(), String> {
    let local: IpAddr = parse("local address", local)?;
    let target: SocketAddr = parse("target", target)?;
    let deadline = Instant::now() + Duration::from_millis(parse("timeout", ms)?);
    let sock = UdpSocket::bind((local, 0)).map_err(|e| format!("bind {local}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let payload = format!("netprobe {} {}", std::process::id(), target);
    let mut buf = [0u8; 1500];
    let mut last_err = String::from("no reply");
    while Instant::now() < deadline {
        // Errors (an unreachable network, ICMP port unreachable before the echo server binds) are retried.
        if let Err(e) = sock.send_to(payload.as_bytes(), target) {
            last_err = format!("send to {target}: {e}");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == target && &buf[..n] == payload.as_bytes() => {
                println!("reply from {target}");
                return Ok(());
            }
            Ok((_, from)) => last_err = format!("unexpected datagram from {from}"),
            Err(e) => last_err = format!("receive: {e}"),
        }
    }
    Err(format!("no reply from {target} to {local}: {last_err}"))
}

fn http_get(addr: &str, path: &str) -> Result<(), String> {
    let addr: SocketAddr = parse("address", addr)?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: sbc\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    print!("{body}");
    Ok(())
}

/// Accepts TCP connections on `addr` and reads them to the end, for `ms` milliseconds: a collector that takes what
/// it is sent (a capture beside it records the bytes). Prints the bytes read.
fn tcp_sink(addr: &str, ms: &str) -> Result<(), String> {
    let addr: SocketAddr = parse("address", addr)?;
    let deadline = Instant::now() + Duration::from_millis(parse("duration", ms)?);
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((c, _)) = listener.accept() {
            c.set_nonblocking(true).map_err(|e| e.to_string())?;
            conns.push(c);
        }
        conns.retain_mut(|c| loop {
            match c.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(_) => break false,
            }
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("read {total} bytes");
    Ok(())
}

/// Receives datagrams on `addr` for `ms` milliseconds and prints how many arrived.
fn udp_sink(addr: &str, ms: &str) -> Result<(), String> {
    let addr: SocketAddr = parse("address", addr)?;
    let deadline = Instant::now() + Duration::from_millis(parse("duration", ms)?);
    let sock = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 65536];
    let mut n = 0u64;
    while Instant::now() < deadline {
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    println!("received {n} datagrams");
    Ok(())
}
