//! The dialer and the TLS listener on loopback: queued messages, mutual TLS identities, certificate names, TLS
//! versions, keep-alives and reconnects.
use super::*;
use crate::tls::{ClientAuth, ClientSettings, ServerSettings};
use std::path::{Path, PathBuf};

/// A CA and two leaves it signs (the server's, named `server.example.net` and 127.0.0.1; a client's named
/// `client.example.net`), written under `dir`: ca.pem, server.pem (chain and key), client.pem.
fn certificates(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).expect("dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    for (file, name) in [("server.pem", "server.example.net"), ("client.pem", "client.example.net")] {
        let mut p = CertificateParams::new(vec![name.to_owned()]).expect("params");
        p.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca).expect("cert");
        std::fs::write(dir.join(file), format!("{}{}", cert.pem(), key.serialize_pem())).expect("write");
    }
    dir.to_owned()
}

fn guard() -> EdgeGuard {
    let plan = Arc::new(sbc_proto::routing::Plan::default());
    EdgeGuard::new(sbc_proto::policy::EdgeConfig::default(), plan)
}

/// A TLS listener on 127.0.0.1 requiring client certificates from the CA in `dir`.
async fn tls_server(dir: &Path) -> (SocketAddr, crate::transport::Receivers) {
    let settings = ServerSettings {
        cert: dir.join("server.pem"),
        key: dir.join("server.pem"),
        ca: Some(dir.join("ca.pem")),
        client_auth: ClientAuth::Required,
        reload_every: Duration::from_secs(60),
    };
    let acceptor = crate::tls::Acceptor::start(&settings).expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = crate::transport::queues();
    let security = super::super::tcp::Security::Tls(acceptor);
    let (limits, trunks, conns) = (StreamLimits::default(), Default::default(), Connections::default());
    tokio::spawn(super::super::tcp::listen(listener, security, limits, trunks, conns, guard(), tx));
    (addr, rx)
}

fn dialer(remote: SocketAddr, settings: ClientSettings) -> (Dialer, mpsc::Receiver<Peer>, Connections) {
    let tls = Connector::start("carrier", &settings, Duration::from_secs(60)).expect("connector");
    let targets = HashMap::from([((Transport::Tls, remote), DialTarget { trunk: "carrier".into(), tls: Some(tls) })]);
    let conns = Connections::default();
    let settings = DialSettings {
        limits: StreamLimits::default(),
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_secs(30)),
    };
    let (tx, _rx) = crate::transport::queues();
    let (d, failed) = Dialer::new(targets, conns.clone(), settings, guard(), tx);
    (d, failed, conns)
}

fn peer(remote: SocketAddr) -> Peer {
    Peer { transport: Transport::Tls, local: "127.0.0.1:0".parse().expect("addr"), remote, conn: None }
}

fn options(n: u32) -> Bytes {
    Bytes::from(format!("OPTIONS sip:gw SIP/2.0\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"))
}

#[tokio::test]
async fn messages_sent_while_dialling_arrive_in_order_over_one_mutual_tls_connection() {
    let dir = certificates(&std::env::temp_dir().join(format!("sbc-dial-ok-{}", std::process::id())));
    let (addr, mut rx) = tls_server(&dir).await;
    let settings = ClientSettings {
        server_name: Some("server.example.net".into()),
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("client.pem")),
        key: Some(dir.join("client.pem")),
    };
    let (d, _failed, conns) = dialer(addr, settings);
    for n in 1..=3 {
        d.send(peer(addr), options(n));
    }
    for n in 1..=3 {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.low.recv()).await.expect("in time").expect("msg");
        assert_eq!(m.bytes, options(n), "message {n} in order");
        assert_eq!(m.transport, Transport::Tls);
        let names = m.identity.as_ref().map(|i| i.names().to_vec()).expect("the client's verified identity");
        assert_eq!(names, ["client.example.net"]);
    }
    // The connection is registered: the next message goes straight over it.
    conns.send(Transport::Tls, None, addr, options(4)).expect("sent on the open connection");
    let m = tokio::time::timeout(Duration::from_secs(5), rx.low.recv()).await.expect("in time").expect("msg");
    assert_eq!(m.bytes, options(4));
    assert_eq!(conns.len(), 1, "one connection for everything");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_gateway_whose_certificate_lacks_the_expected_name_is_reported_and_its_messages_dropped() {
    let dir = certificates(&std::env::temp_dir().join(format!("sbc-dial-name-{}", std::process::id())));
    let (addr, mut rx) = tls_server(&dir).await;
    let settings = ClientSettings {
        server_name: Some("carrier.example.net".into()),
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("client.pem")),
        key: Some(dir.join("client.pem")),
    };
    let (d, mut failed, conns) = dialer(addr, settings);
    d.send(peer(addr), options(1));
    d.send(peer(addr), options(2));
    let p = tokio::time::timeout(Duration::from_secs(5), failed.recv()).await.expect("in time").expect("report");
    assert_eq!((p.transport, p.remote), (Transport::Tls, addr));
    assert!(rx.low.try_recv().is_err(), "nothing reached the server");
    assert!(conns.is_empty(), "no connection kept");
    assert_eq!(conns.fail_dial((Transport::Tls, addr)), 0, "the waiting messages were dropped");
    // A client without a certificate is refused by the server; that, too, is reported.
    let settings = ClientSettings {
        server_name: Some("server.example.net".into()),
        ca: Some(dir.join("ca.pem")),
        ..ClientSettings::default()
    };
    let (d, mut failed, _) = dialer(addr, settings);
    d.send(peer(addr), options(1));
    // TLS 1.3: the client finishes its handshake before the server checks its certificate; the refusal then
    // arrives as an alert that ends the connection, reported all the same.
    let p = tokio::time::timeout(Duration::from_secs(5), failed.recv()).await.expect("in time").expect("report");
    assert_eq!(p.remote, addr);
    assert!(rx.low.try_recv().is_err(), "nothing reached the server without a client certificate");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_tcp_gateway_gets_keepalive_pings_and_a_new_connection_after_it_dropped_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = gateway.local_addr().expect("addr");
    let targets = HashMap::from([((Transport::Tcp, addr), DialTarget { trunk: "carrier".into(), tls: None })]);
    let settings = DialSettings {
        limits: StreamLimits::default(),
        connect_timeout: Duration::from_secs(5),
        keepalive: Some(Duration::from_millis(100)),
    };
    let (tx, _rx) = crate::transport::queues();
    let (d, mut failed) = Dialer::new(targets, Connections::default(), settings, guard(), tx);
    let tcp = Peer { transport: Transport::Tcp, ..peer(addr) };
    let read_until = |wanted: &'static [u8]| {
        move |mut s: tokio::net::TcpStream| async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(wanted.len()).any(|w| w == wanted) {
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("in time");
                let n = n.expect("read");
                assert!(n > 0, "closed after {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
            (s, got)
        }
    };
    d.send(tcp, options(1));
    let (first, _) = gateway.accept().await.expect("the first message opens a connection");
    let (mut first, got) = read_until(b"CSeq: 1 OPTIONS")(first).await;
    assert!(got.starts_with(b"OPTIONS sip:gw"), "{got:?}");
    let (first, got) = read_until(b"\r\n\r\n\r\n")({
        first.write_all(b"\r\n").await.expect("pong");
        first
    })
    .await;
    assert!(got.ends_with(b"\r\n\r\n"), "a keep-alive ping: {got:?}");
    // The gateway drops the connection: reported (nothing was waiting on it), and the next message opens a
    // new one.
    drop(first);
    let p = tokio::time::timeout(Duration::from_secs(5), failed.recv()).await.expect("in time").expect("report");
    assert_eq!(p.remote, addr);
    d.send(tcp, options(2));
    let (second, _) = gateway.accept().await.expect("reconnected");
    let (_, got) = read_until(b"CSeq: 2 OPTIONS")(second).await;
    assert!(got.starts_with(b"OPTIONS sip:gw"), "{got:?}");
}

#[tokio::test]
async fn the_listener_serves_tls_1_2_and_1_3_clients() {
    use rustls_pki_types::ServerName;
    use tokio::io::AsyncWriteExt;
    let dir = certificates(&std::env::temp_dir().join(format!("sbc-tls-versions-{}", std::process::id())));
    let (addr, mut rx) = tls_server(&dir).await;
    let versions: [&[&rustls::SupportedProtocolVersion]; 2] = [&[&rustls::version::TLS12], &[&rustls::version::TLS13]];
    for (n, version) in versions.into_iter().enumerate() {
        let roots = crate::tls::files::roots(&dir.join("ca.pem")).expect("roots");
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(version)
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                crate::tls::files::certificates(&dir.join("client.pem")).expect("chain"),
                crate::tls::files::private_key(&dir.join("client.pem")).expect("key"),
            )
            .expect("client config");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("server.example.net").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version[0].version));
        tls.write_all(&options(n as u32)).await.expect("write");
        let m = tokio::time::timeout(Duration::from_secs(5), rx.low.recv()).await.expect("in time").expect("msg");
        assert_eq!(m.bytes, options(n as u32));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
