//! A SIP-over-WebSocket client for the integration tests (RFC 7118), as a browser softphone speaks it: blocking
//! tungstenite over a TCP socket opened inside a network namespace, with rustls underneath for `wss:`. It sends and
//! receives whole SIP messages as WebSocket text messages; the SIP itself is the test's.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// How the client connects.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// For `wss:`: the CA (PEM) the server's certificate must chain to, and the name it must carry.
    pub tls: Option<(String, String)>,
    /// The `Origin` header, as a browser sends it; `None`: none (no browser).
    pub origin: Option<String>,
    /// The `Sec-WebSocket-Protocol` offered; `None`: none.
    pub protocol: Option<String>,
}

impl Default for WsOptions {
    /// Plain `ws:`, no Origin, the `sip` subprotocol.
    fn default() -> Self {
        Self { tls: None, origin: None, protocol: Some("sip".into()) }
    }
}

/// The byte stream under the WebSocket.
#[derive(Debug)]
pub enum Stream {
    /// `ws:`.
    Plain(TcpStream),
    /// `wss:`.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref(),
        }
    }
}

/// How the server answered our closing handshake ([`WsClient::close_handshake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseAnswer {
    /// The code of the server's close frame (1005 for a frame without one); `None`: no close frame came.
    pub code: Option<u16>,
    /// The connection then ended cleanly: for `wss:` a TLS close_notify before the end of the TCP stream, for
    /// `ws:` the end of the TCP stream.
    pub clean_end: bool,
}

/// A connected SIP-over-WebSocket client.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocket<Stream>,
    /// Our address as the SBC sees it.
    pub local: SocketAddr,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
}

/// Opens a TCP connection to `server` from inside network namespace `netns` (a name under /run/netns), by a
/// short-lived thread that joins it: a socket keeps the namespace it was created in.
pub fn connect_in(netns: &str, server: SocketAddr) -> Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<TcpStream> {
            let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).context("setns (needs root)")?;
            TcpStream::connect_timeout(&server, Duration::from_secs(5)).with_context(|| format!("connecting {server}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the setns thread panicked"))?
    })
}

impl WsClient {
    /// Connects from `netns` to `server` and upgrades. `Err` carries the HTTP status of a refused upgrade
    /// (`"HTTP 403"`) or the transport error.
    pub fn connect(netns: &str, server: SocketAddr, opts: &WsOptions) -> Result<Self> {
        let tcp = connect_in(netns, server)?;
        let local = tcp.local_addr()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let (scheme, stream) = match &opts.tls {
            None => ("ws", Stream::Plain(tcp)),
            Some((ca, name)) => ("wss", Stream::Tls(Box::new(tls_client(tcp, ca, name)?))),
        };
        let mut req = format!("{scheme}://{server}/").into_client_request()?;
        if let Some(o) = &opts.origin {
            req.headers_mut().insert("Origin", HeaderValue::from_str(o)?);
        }
        if let Some(p) = &opts.protocol {
            req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p)?);
        }
        let (ws, resp) = match tungstenite::client(req, stream) {
            Ok(ok) => ok,
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                bail!("HTTP {}", r.status().as_u16())
            }
            Err(e) => bail!("websocket handshake: {e}"),
        };
        let protocol = resp.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self { ws, local, protocol })
    }

    /// Sends one SIP message as one text message.
    pub fn send(&mut self, sip: &str) -> Result<()> {
        self.ws.send(Message::text(sip))?;
        Ok(())
    }

    /// Sends `bytes` as one binary message.
    pub fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::binary(bytes))?;
        Ok(())
    }

    /// The next SIP message (text or binary) within `timeout`; pings are answered on the way.
    pub fn recv(&mut self, timeout: Duration) -> Result<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no SIP message within {timeout:?}");
            }
            self.ws.get_ref().tcp().set_read_timeout(Some(left.min(Duration::from_millis(200))))?;
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(t.to_string()),
                Ok(Message::Binary(b)) => return Ok(String::from_utf8_lossy(&b).into_owned()),
                Ok(Message::Close(f)) => bail!("closed by the server: {f:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => bail!("websocket read: {e}"),
            }
        }
    }

    /// The next message that starts with `start` (a method, or `SIP/2.0 200`) within `timeout`, skipping others
    /// (provisional responses); every message seen is appended to `seen`.
    pub fn recv_starting(&mut self, start: &str, timeout: Duration, seen: &mut Vec<String>) -> Result<String> {
        let end = Instant::now() + timeout;
        loop {
            let m = self
                .recv(end.saturating_duration_since(Instant::now()))
                .with_context(|| format!("waiting for {start}; got {seen:#?}"))?;
            seen.push(m.clone());
            if m.starts_with(start) {
                return Ok(m);
            }
        }
    }

    /// How the server ends the connection within `timeout`: its close frame's code, or `None` for a plain reset.
    pub fn closed_by_server(&mut self, timeout: Duration) -> Result<Option<u16>> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.ws.get_ref().tcp().set_read_timeout(Some(Duration::from_millis(200)))?;
            match self.ws.read() {
                Ok(Message::Close(f)) => return Ok(f.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return Ok(None),
                Err(_) => return Ok(None),
            }
        }
        bail!("the server kept the connection open for {timeout:?}")
    }

    /// Ends the WebSocket with a closing handshake (code 1000), as a tab that logs out does, and waits up to
    /// `timeout` for the server's close frame.
    pub fn close(mut self, timeout: Duration) -> Result<()> {
        self.ws.close(None).context("sending the close frame")?;
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.ws.get_ref().tcp().set_read_timeout(Some(Duration::from_millis(200)))?;
            match self.ws.read() {
                Ok(Message::Close(_)) => return Ok(()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                // The WebSocket closing handshake is what counts here (`close_handshake` checks the TLS end).
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return Ok(()),
                Err(e) => bail!("websocket close: {e}"),
            }
        }
        bail!("the server did not answer our close frame within {timeout:?}")
    }

    /// Sends a close frame with code 1000, as a tab that logs out does, and reports within `timeout` the server's
    /// close frame and how the connection ended after it.
    pub fn close_handshake(mut self, timeout: Duration) -> Result<CloseAnswer> {
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "logged out".into(),
        };
        self.ws.close(Some(frame)).context("sending the close frame")?;
        let end = Instant::now() + timeout;
        let mut code = None;
        while Instant::now() < end {
            self.ws.get_ref().tcp().set_read_timeout(Some(Duration::from_millis(200)))?;
            match self.ws.read() {
                Ok(Message::Close(f)) => code = Some(f.map_or(1005, |f| u16::from(f.code))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                // rustls reports the end of a TLS stream without close_notify as UnexpectedEof.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(CloseAnswer { code, clean_end: false })
                }
                Err(tungstenite::Error::ConnectionClosed) => return Ok(CloseAnswer { code, clean_end: true }),
                Err(e) => bail!("websocket close: {e} (close frame so far: {code:?})"),
            }
        }
        bail!("the server did not end the connection within {timeout:?} (close frame: {code:?})")
    }

    /// Drops the TCP connection without a closing handshake, as a crashed tab or a lost network does.
    pub fn vanish(self) {
        let _ = self.ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
    }
}

/// ring, as the SBC uses (see `sbc::tls::provider` for why despite its deprecation).
#[allow(deprecated)]
fn tls_client(
    tcp: TcpStream,
    ca_pem: &str,
    name: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into()?)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}
