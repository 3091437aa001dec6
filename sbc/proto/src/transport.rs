//! Where a message came from and where it goes: the transport-level addressing the core reasons about, without
//! owning any socket.

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport (RFC 3261 §18; RFC 7118 for WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, so transactions retransmit.
    Udp,
    /// TCP: reliable and stream-framed by Content-Length.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// WebSocket over TLS (RFC 7118 §5: Via token `WSS`; URIs still say `transport=ws`).
    Wss,
}

impl Transport {
    /// Whether the transport is reliable (RFC 3261 §17: no retransmission timers).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// The Via transport token (RFC 3261 §20.42, RFC 7118 §5.2).
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// Lower-case name for logs, metrics and config (`udp`, `tcp`, `tls`, `ws`, `wss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Whether each message arrives whole, framed by the transport (a UDP datagram; a WebSocket message, RFC 7118
    /// §5), so Content-Length may be absent; over TCP and TLS it is mandatory, as it frames the stream.
    pub fn is_message_framed(self) -> bool {
        matches!(self, Self::Udp | Self::Ws | Self::Wss)
    }

    /// Whether a peer over this transport can be reached only over the connection it opened: a WebSocket client
    /// (a browser) listens on nothing, and its Via and Contact hosts are `.invalid` (RFC 7118 §5). Requests to it
    /// go over its connection ([`Peer::conn`]); once that connection closes it is gone, and its calls end
    /// (`Endpoint::handle_connection_closed`). A TCP or TLS peer may reconnect or be dialled, so its calls live on.
    pub fn is_flow_bound(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection of a connection-oriented transport, numbered by the driver. Responses to a request received on a
/// connection go back on that connection (RFC 3261 §18.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The verified identity of a TLS peer that presented a certificate: the subject's common name and the DNS names
/// of its subjectAltName, lower-cased, without duplicates. The transport fills it in only after the certificate
/// was verified against the configured CA; the core matches it against trunks' `match.tls` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsIdentity {
    names: Vec<String>,
}

impl TlsIdentity {
    /// An identity holding `names` (lower-cased, duplicates removed, order kept).
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let n = n.to_ascii_lowercase();
            if !n.is_empty() && !out.contains(&n) {
                out.push(n);
            }
        }
        Self { names: out }
    }

    /// The names, lower-case.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `name` is one of the names (ASCII case-insensitive; no wildcards: a trunk names its peer exactly).
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The two ends of a message on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub transport: Transport,
    /// Our address.
    pub local: SocketAddr,
    /// The other side's address.
    pub remote: SocketAddr,
    /// The connection, for connection-oriented transports, if one exists.
    pub conn: Option<ConnId>,
}
