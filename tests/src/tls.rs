//! TLS for the integration tests: certificates made with rcgen (a test CA and the leaves it signs), and stunnel
//! in front of SIPp. Debian's SIPp is built without OpenSSL (`-t l1` answers "you must compile SIPp with
//! OpenSSL"), so a SIPp peer "over TLS" is SIPp over TCP on loopback behind stunnel, which does the TLS — as
//! client with or without a certificate, or as server with a certificate of any name.

use crate::netns::{Host, Process, Topology};
use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Leaf {
    /// Writes `<dir>/<name>.pem` (certificate) and `<dir>/<name>.key`; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert)?;
        std::fs::write(&key, &self.key)?;
        Ok((cert, key))
    }

    /// The certificate followed by its key, in one PEM (a file both `cert` and `key` may name).
    pub fn combined(&self) -> String {
        format!("{}{}", self.cert, self.key)
    }
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)? })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for server and client use with common name `cn`, DNS names `dns` and IP addresses `ips`.
    pub fn issue(&self, cn: &str, dns: &[&str], ips: &[IpAddr]) -> Result<Leaf> {
        let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf { cert: cert.pem(), key: key.serialize_pem() })
    }
}

/// One stunnel service.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// Client mode (plain in, TLS out) or server mode (TLS in, plain out).
    pub client: bool,
    /// Where it accepts.
    pub accept: SocketAddr,
    /// Where it connects.
    pub connect: SocketAddr,
    /// Its certificate and key (a server's; a client's for mutual TLS).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// For a client: the CA the server's certificate must chain to, and the name it must carry.
    pub verify: Option<(PathBuf, String)>,
}

/// Starts stunnel in `host` with `tunnel` (config and logs in the topology's directory as `<name>.*`) and waits
/// until it listens.
pub fn stunnel(topo: &Topology, host: Host, name: &str, tunnel: &Tunnel) -> Result<Process> {
    let program = crate::require_tool("stunnel4", "stunnel4");
    let conf = topo.dir().join(format!("{name}.conf"));
    let mut text = format!(
        "foreground = yes\npid =\ndebug = notice\nsyslog = no\n[{name}]\nclient = {}\naccept = {}\nconnect = {}\n\
         sslVersionMin = TLSv1.2\n",
        if tunnel.client { "yes" } else { "no" },
        tunnel.accept,
        tunnel.connect
    );
    if let Some((cert, key)) = &tunnel.cert {
        text.push_str(&format!("cert = {}\nkey = {}\n", cert.display(), key.display()));
    }
    if let Some((ca, host_name)) = &tunnel.verify {
        text.push_str(&format!("CAfile = {}\nverifyChain = yes\ncheckHost = {host_name}\n", ca.display()));
    }
    std::fs::write(&conf, text)?;
    let p = topo.spawn(host, name, program, &[&conf])?;
    wait_tcp_listening(topo, host, tunnel.accept.port(), Duration::from_secs(5))
        .with_context(|| format!("stunnel {name}: {}", p.output_tail()))?;
    Ok(p)
}

/// Waits until something in `host` listens on TCP `port` (per `ss`).
pub fn wait_tcp_listening(topo: &Topology, host: Host, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = topo.exec(host, "ss", &["-Hltn", "sport", "=", &format!(":{port}")])?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on TCP port {port} in {} after {timeout:?}", topo.ns(host));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The subject of the certificate a TLS server at `addr` presents to a client in `host` (OpenSSL's
/// `s_client`, presenting `client` for mutual TLS), e.g. `CN = sbc.example.net`.
pub fn served_subject(
    topo: &Topology,
    host: Host,
    addr: SocketAddr,
    client: Option<&(PathBuf, PathBuf)>,
) -> Result<String> {
    let connect = addr.to_string();
    let mut args = vec!["5", "openssl", "s_client", "-connect", &connect, "-brief"];
    let (cert, key);
    if let Some((c, k)) = client {
        (cert, key) = (c.display().to_string(), k.display().to_string());
        args.extend(["-cert", &cert, "-key", &key]);
    }
    let out = crate::netns::command(Some(&topo.ns(host)), "timeout")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl s_client")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines()
        .find_map(|l| l.strip_prefix("Peer certificate: "))
        .map(|s| s.trim().to_owned())
        .with_context(|| format!("no peer certificate in the output of openssl s_client -connect {addr}: {text}"))
}
