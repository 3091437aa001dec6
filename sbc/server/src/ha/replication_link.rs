//! The replication link at run time: the standby's listener (`listen_task`) and the active's connection
//! (`send_task`), plain or secured with the pair's secret ([`super::secure_link`]). A connection is the peer's
//! only once its handshake (secured) or first line (plain) says so: before that nothing of it is applied, and a
//! box with a secret and one without refuse each other, each saying which.

use super::keys::PairKeys;
use super::plain_peer::{self, PeerSpeaks};
use super::secure_link::{self, Deframer, Initiator, Lines, Refusal, Transport};
use super::{HaEvent, HaStatus, LogLimit, Outgoing, SOFTWARE};
use sbc_proto::ha::{Hello, HelloLine, Record, Role};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a connection has for the handshake (and, plain, the hello): one that says nothing is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A refused link is tried again after this (each try costs the active a snapshot).
const REFUSED_RETRY: Duration = Duration::from_secs(2);
/// The first line of a secured link (the preamble) and the standby's answer are this short; a plain hello is
/// longer and is cut here, which is enough to tell it apart.
const SHORT_LINE: u64 = 256;

/// Why a replication link did not come up.
#[derive(Debug)]
enum LinkFailure {
    /// Refused, for this reason (logged and counted).
    Refused(Refusal),
    /// Closed, unreachable or silent: tried again without fuss.
    Closed,
}

impl From<std::io::Error> for LinkFailure {
    fn from(_: std::io::Error) -> Self {
        LinkFailure::Closed
    }
}

/// Counts a refused link by reason and logs it (each reason at most once per 10 s: the active retries).
fn refuse_link(why: Refusal, peer: std::net::SocketAddr, direction: &str, log: &Mutex<LogLimit>) {
    metrics::counter!("sbc_ha_link_refused_total", "reason" => why.code()).increment(1);
    if log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).allow(why.code()) {
        tracing::error!(%peer, reason = why.code(), "replication link {direction} refused: {why}");
    }
}

/// One line of at most [`SHORT_LINE`] bytes, without its newline.
async fn short_line<R: tokio::io::AsyncBufRead + Unpin>(rd: &mut R) -> Result<String, LinkFailure> {
    let mut line = Vec::new();
    let n = (&mut *rd).take(SHORT_LINE).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(LinkFailure::Closed);
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_owned())
}

/// One handshake message: two bytes of length, then the message.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Vec<u8>, LinkFailure> {
    let len = rd.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    rd.read_exact(&mut message).await?;
    Ok(message)
}

/// The lines the active sends, as they came (plain) or decrypted (secured).
enum LinkReader {
    Plain { lines: tokio::io::Lines<BufReader<TcpStream>>, first: Option<String> },
    Secure { rd: BufReader<TcpStream>, transport: Transport, deframer: Deframer, lines: Lines },
}

impl LinkReader {
    /// The next line; `None` when the link closed; a refusal when a message fails its authentication.
    async fn next_line(&mut self) -> Result<Option<String>, Refusal> {
        match self {
            LinkReader::Plain { lines, first } => match first.take() {
                Some(l) => Ok(Some(l)),
                None => Ok(lines.next_line().await.ok().flatten()),
            },
            LinkReader::Secure { rd, transport, deframer, lines } => loop {
                if let Some(l) = lines.next_line() {
                    return Ok(Some(l));
                }
                if let Some(m) = deframer.next_message() {
                    lines.push(&transport.open(&m)?);
                    continue;
                }
                let buf = rd.fill_buf().await.unwrap_or_default();
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = buf.len();
                deframer.push(buf);
                rd.consume(n);
            },
        }
    }
}

/// The standby's side of a new connection: the handshake (secured) or the first line (plain), refusing a peer
/// that does not have this box's secret, or has one while this box has none. With `accept_plain` (a box with a
/// secret and `accept_plain_peer`, its peer not heard sealed) a plain link is taken too: a plain hello or record
/// starts with `{`, the secured link with its preamble.
async fn accept_link(
    stream: TcpStream,
    keys: Option<&PairKeys>,
    accept_plain: bool,
) -> Result<LinkReader, LinkFailure> {
    let mut rd = BufReader::new(stream);
    let plain = match keys {
        None => true,
        Some(_) if accept_plain => rd.fill_buf().await?.first() == Some(&b'{'),
        Some(_) => false,
    };
    if plain {
        let mut first = String::new();
        rd.read_line(&mut first).await?;
        if first.is_empty() {
            return Err(LinkFailure::Closed);
        }
        if first.trim_end() == secure_link::PREAMBLE {
            let _ = rd.get_mut().write_all(Refusal::PeerHasSecret.line().as_bytes()).await;
            return Err(LinkFailure::Refused(Refusal::PeerHasSecret));
        }
        let first = Some(first.trim_end_matches(['\n', '\r']).to_owned());
        return Ok(LinkReader::Plain { lines: rd.lines(), first });
    }
    let Some(keys) = keys else { unreachable!("a box without keys takes the plain link above") };
    let first = short_line(&mut rd).await?;
    if first != secure_link::PREAMBLE {
        let why = if first.starts_with('{') { Refusal::PeerHasNoSecret } else { Refusal::Garbled };
        let _ = rd.get_mut().write_all(why.line().as_bytes()).await;
        return Err(LinkFailure::Refused(why));
    }
    let message1 = read_frame(&mut rd).await?;
    match secure_link::respond(keys, &message1) {
        Ok((transport, answer)) => {
            rd.get_mut().write_all(&answer).await?;
            Ok(LinkReader::Secure { rd, transport, deframer: Deframer::default(), lines: Lines::default() })
        }
        Err(why) => {
            let _ = rd.get_mut().write_all(why.line().as_bytes()).await;
            Err(LinkFailure::Refused(why))
        }
    }
}

/// Where and as whom the standby takes the active's link.
pub(super) struct StandbyLink {
    pub(super) listen: std::net::SocketAddr,
    pub(super) node: String,
    pub(super) keys: Option<PairKeys>,
    /// `accept_plain_peer`: how the peer's heartbeats speak (a plain link is taken unless they were sealed).
    pub(super) plain: Option<tokio::sync::watch::Receiver<PeerSpeaks>>,
}

/// The standby's side of the link: every connection from the active that is the peer's starts a resync.
pub(super) async fn listen_task(
    link: StandbyLink,
    events: mpsc::UnboundedSender<HaEvent>,
    status: Arc<Mutex<HaStatus>>,
) {
    let StandbyLink { listen, node, keys, plain } = link;
    let listener = match bind_listener(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%listen, error = %e, "ha.listen: cannot listen; this box can never be a standby");
            return;
        }
    };
    let log = Arc::new(Mutex::new(LogLimit::default()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let (events, status, node, keys, log) =
            (events.clone(), status.clone(), node.clone(), keys.clone(), log.clone());
        let accept_plain = plain.as_ref().is_some_and(|p| plain_peer::accept_plain_link(true, *p.borrow()));
        tokio::spawn(async move {
            let accepting = accept_link(stream, keys.as_ref(), accept_plain);
            let mut reader = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
                Ok(Ok(r)) => r,
                Ok(Err(LinkFailure::Refused(why))) => return refuse_link(why, peer, "from the active", &log),
                Ok(Err(LinkFailure::Closed)) | Err(_) => {
                    tracing::info!(%peer, "replication link from the active closed before it was up");
                    return;
                }
            };
            // Only now, the peer being the pair's: an unauthenticated connection must not make us forget a thing.
            let secured = matches!(reader, LinkReader::Secure { .. });
            tracing::info!(%peer, secured, "replication link from the active: resync");
            if keys.is_some() {
                if !secured {
                    metrics::counter!("sbc_ha_plain_peer_total", "what" => "link").increment(1);
                    tracing::error!(%peer, "ha.accept_plain_peer: the link to {peer} is not secured (a plain replication link from the active); remove the setting once both boxes run this build");
                }
                status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_plain_link(!secured);
            }
            if events.send(HaEvent::ResyncStart).is_err() {
                return;
            }
            let mut first = true;
            loop {
                let line = match reader.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(why) => {
                        refuse_link(why, peer, "from the active", &log);
                        break;
                    }
                };
                if std::mem::take(&mut first) {
                    // The writer's format: a link without a hello is format 1.
                    let hello = serde_json::from_str::<HelloLine>(&line).ok().map(|h| h.hello);
                    let (format, software) = hello.as_ref().map_or((1, None), |h| (h.format, Some(h.software.clone())));
                    {
                        let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        (s.peer_format, s.peer_software) = (Some(format), software.clone());
                    }
                    if let Some(h) = &hello {
                        if let Err(why) = h.readable() {
                            metrics::counter!("sbc_ha_link_refused_total", "reason" => "format").increment(1);
                            tracing::error!(%peer, "replication link refused: {why}");
                            return;
                        }
                        if sbc_proto::ha::call_ranges_collide(&h.node, &node) {
                            tracing::error!(peer = %h.node, node = %node, "ha.node: the two names give the same range of call numbers (active/active needs them apart): rename one box");
                        }
                        tracing::info!(%peer, format, software = %h.software, "replication link: the active's records");
                        continue;
                    }
                }
                match serde_json::from_str::<Record>(&line) {
                    Ok(r) => {
                        metrics::counter!("sbc_ha_records_received_total").increment(1);
                        status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).records_received += 1;
                        if events.send(HaEvent::Record(Box::new(r))).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "bad replication record ignored"),
                }
            }
            tracing::info!(%peer, "replication link from the active closed");
        });
    }
}

async fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(16)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

/// Where and as whom the active connects to the standby.
pub(super) struct ActiveLink {
    pub(super) peer: std::net::SocketAddr,
    pub(super) node: String,
    pub(super) keys: Option<PairKeys>,
    /// `accept_plain_peer`: how the peer's heartbeats speak (the link goes plain to a peer heard plain).
    pub(super) plain: Option<tokio::sync::watch::Receiver<PeerSpeaks>>,
}

impl ActiveLink {
    /// The keys to open the link with: none (plain) for a peer heard plain under `accept_plain_peer`.
    fn keys_now(&self) -> Option<&PairKeys> {
        let speaks = self.plain.as_ref().map_or(PeerSpeaks::Unknown, |p| *p.borrow());
        self.keys.as_ref().filter(|_| plain_peer::open_secured(self.plain.is_some(), speaks))
    }
}

/// The active's side of the handshake on a connected stream: the transport (secured) or none (plain).
async fn open_link(stream: &mut TcpStream, keys: Option<&PairKeys>) -> Result<Option<Transport>, LinkFailure> {
    let Some(keys) = keys else { return Ok(None) };
    let (initiator, first) = Initiator::start(keys);
    stream.write_all(&first).await?;
    let mut rd = BufReader::new(stream);
    let answer = short_line(&mut rd).await?;
    if answer != "ok" {
        return Err(LinkFailure::Refused(Refusal::from_standby(&answer).unwrap_or(Refusal::Garbled)));
    }
    let message2 = read_frame(&mut rd).await?;
    initiator.finish(&message2).map(Some).map_err(LinkFailure::Refused)
}

/// The link's text as it goes on the wire: as is (plain) or in Noise messages.
fn wire(transport: &mut Option<Transport>, text: &[u8]) -> Vec<u8> {
    match transport {
        Some(t) => t.seal(text),
        None => text.to_vec(),
    }
}

/// The active's side: while active, keep a connection to the standby, snapshot first, then live records.
pub(super) async fn send_task(
    link: ActiveLink,
    mut out: mpsc::Receiver<Outgoing>,
    events: mpsc::UnboundedSender<HaEvent>,
    mut role: tokio::sync::watch::Receiver<Role>,
    status: Arc<Mutex<HaStatus>>,
) {
    let peer = link.peer;
    let log = Mutex::new(LogLimit::default());
    loop {
        // Standby: nothing to send; what queues meanwhile is covered by the next snapshot.
        while *role.borrow() != Role::Active {
            while out.try_recv().is_ok() {}
            if role.changed().await.is_err() {
                return;
            }
        }
        let conn = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(peer)).await;
        let Ok(Ok(mut stream)) = conn else {
            while out.try_recv().is_ok() {}
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut transport = match tokio::time::timeout(HANDSHAKE_TIMEOUT, open_link(&mut stream, link.keys_now())).await
        {
            Ok(Ok(t)) => t,
            Ok(Err(LinkFailure::Refused(why))) => {
                refuse_link(why, peer, "to the standby", &log);
                while out.try_recv().is_ok() {}
                tokio::time::sleep(REFUSED_RETRY).await;
                continue;
            }
            Ok(Err(LinkFailure::Closed)) | Err(_) => {
                while out.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        tracing::info!(%peer, secured = transport.is_some(), "replication link to the standby up: sending the snapshot");
        if link.keys.is_some() {
            if transport.is_none() {
                metrics::counter!("sbc_ha_plain_peer_total", "what" => "link").increment(1);
                tracing::error!(%peer, "ha.accept_plain_peer: the link to {peer} is not secured (a plain replication link to the standby); remove the setting once both boxes run this build");
            }
            status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_plain_link(transport.is_none());
        }
        // A plain link is dropped once the peer's heartbeats are sealed: it reconnects secured.
        let mut speaks = link.plain.clone();
        let hello = Hello {
            format: sbc_proto::ha::FORMAT,
            min_format: sbc_proto::ha::MIN_FORMAT,
            software: SOFTWARE.to_owned(),
            node: link.node.clone(),
        };
        let mut line = serde_json::to_string(&HelloLine { hello }).expect("a hello serializes");
        line.push('\n');
        if stream.write_all(&wire(&mut transport, line.as_bytes())).await.is_err() {
            continue;
        }
        // Records queued before the snapshot are in it (or ended): drop them, then ask for the snapshot.
        while out.try_recv().is_ok() {}
        if events.send(HaEvent::NeedSnapshot).is_err() {
            return;
        }
        let mut got_snapshot = false;
        // The standby writes only to refuse a plain link (a `refused CODE` line): a read that returns is the link
        // closing (the standby restarted), which must be noticed even when no record is waiting, so that the new
        // standby gets its snapshot at once.
        let (mut rd, mut stream) = stream.into_split();
        let mut scratch = [0u8; 256];
        loop {
            tokio::select! {
                n = rd.read(&mut scratch) => {
                    let said = String::from_utf8_lossy(&scratch[..n.unwrap_or(0)]).into_owned();
                    if let Some(why) = Refusal::from_standby(&said) {
                        refuse_link(why, peer, "to the standby", &log);
                        tokio::time::sleep(REFUSED_RETRY).await;
                    }
                    break;
                }
                o = out.recv() => {
                    let Some(o) = o else { return };
                    let records = match o {
                        Outgoing::Snapshot(r) => { got_snapshot = true; r }
                        Outgoing::Record(_) if !got_snapshot => continue,
                        Outgoing::Record(r) => vec![*r],
                    };
                    let mut text = String::new();
                    for r in &records {
                        text.push_str(&serde_json::to_string(r).expect("records serialize"));
                        text.push('\n');
                    }
                    if stream.write_all(&wire(&mut transport, text.as_bytes())).await.is_err() {
                        break;
                    }
                    metrics::counter!("sbc_ha_records_sent_total").increment(records.len() as u64);
                    status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).records_sent += records.len() as u64;
                }
                r = role.changed() => {
                    if r.is_err() || *role.borrow() != Role::Active { break }
                }
                Ok(()) = async { speaks.as_mut().expect("guarded").changed().await }, if speaks.is_some() => {
                    let sealed = speaks.as_mut().is_some_and(|s| *s.borrow_and_update() == PeerSpeaks::Sealed);
                    if transport.is_none() && sealed {
                        tracing::warn!(%peer, "replication link to the standby: the peer's heartbeats are sealed now: reconnecting secured");
                        break;
                    }
                }
            }
        }
        tracing::info!(%peer, "replication link to the standby down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connects an active with `active` keys to a standby with `standby` keys over loopback; the active writes a
    /// hello line. Returns each side's outcome (the standby's first line when it accepted).
    async fn connect(
        active: Option<PairKeys>,
        standby: Option<PairKeys>,
    ) -> (Result<(), Refusal>, Result<Option<String>, Refusal>) {
        connect_accepting(active, standby, false).await
    }

    /// As [`connect`], the standby taking a plain link (`accept_plain_peer`) when `accept_plain`.
    async fn connect_accepting(
        active: Option<PairKeys>,
        standby: Option<PairKeys>,
        accept_plain: bool,
    ) -> (Result<(), Refusal>, Result<Option<String>, Refusal>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let standby_side = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            match accept_link(stream, standby.as_ref(), accept_plain).await {
                Ok(mut reader) => reader.next_line().await,
                Err(LinkFailure::Refused(why)) => Err(why),
                Err(LinkFailure::Closed) => panic!("the standby saw the link close"),
            }
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let active_side = match open_link(&mut stream, active.as_ref()).await {
            Ok(mut transport) => {
                stream.write_all(&wire(&mut transport, b"{\"hello\":{}}\n")).await.unwrap();
                // A plain active hears a refusal only by reading (as send_task does).
                let mut said = [0u8; 256];
                let n = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut said)).await;
                match n.ok().and_then(Result::ok) {
                    Some(n) => Refusal::from_standby(&String::from_utf8_lossy(&said[..n])).map_or(Ok(()), Err),
                    None => Ok(()),
                }
            }
            Err(LinkFailure::Refused(why)) => Err(why),
            Err(LinkFailure::Closed) => panic!("the active saw the link close"),
        };
        (active_side, standby_side.await.unwrap())
    }

    fn keys(secret: &str) -> Option<PairKeys> {
        Some(PairKeys::derive(secret.as_bytes()))
    }

    #[tokio::test]
    async fn the_same_secret_pairs_and_the_hello_arrives_decrypted() {
        let (active, standby) = connect(keys("pair"), keys("pair")).await;
        assert_eq!(active, Ok(()));
        assert_eq!(standby, Ok(Some("{\"hello\":{}}".to_owned())));
    }

    #[tokio::test]
    async fn another_secret_is_refused_on_both_sides() {
        assert_eq!(
            connect(keys("pair"), keys("other")).await,
            (Err(Refusal::SecretDiffers), Err(Refusal::SecretDiffers))
        );
    }

    #[tokio::test]
    async fn a_box_with_a_secret_and_one_without_refuse_each_other_saying_which() {
        // The active has the secret: the standby has none.
        assert_eq!(connect(keys("pair"), None).await, (Err(Refusal::PeerHasNoSecret), Err(Refusal::PeerHasSecret)));
        // The standby has it: the active speaks the plain link.
        assert_eq!(connect(None, keys("pair")).await, (Err(Refusal::PeerHasSecret), Err(Refusal::PeerHasNoSecret)));
        // Neither: the plain link of old.
        assert_eq!(connect(None, None).await, (Ok(()), Ok(Some("{\"hello\":{}}".to_owned()))));
    }

    #[tokio::test]
    async fn a_standby_accepting_plain_peers_takes_either_link() {
        let hello = Ok(Some("{\"hello\":{}}".to_owned()));
        assert_eq!(connect_accepting(None, keys("pair"), true).await, (Ok(()), hello.clone()), "plain");
        assert_eq!(connect_accepting(keys("pair"), keys("pair"), true).await, (Ok(()), hello), "secured");
        assert_eq!(
            connect_accepting(keys("other"), keys("pair"), true).await,
            (Err(Refusal::SecretDiffers), Err(Refusal::SecretDiffers)),
            "another secret is still refused"
        );
    }
}
