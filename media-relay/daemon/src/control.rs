//! The control socket of a standalone relay: [`relay_proto::control`] commands in, events out, one JSON object
//! per line over TCP. One controller at a time: a new connection replaces the old one (an `sbc` that restarted
//! reconnects and replays its sessions).

use crate::relay::Relay;
use relay_proto::control::{self, Command, Event};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

/// Longest control line accepted; a longer one closes the connection (a controller never sends one).
const MAX_LINE: usize = 64 * 1024;

/// Serves the control socket until the listener fails. Events of the relay go to the current connection; with
/// none, they are dropped (the controller replays its sessions when it comes back).
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, mut events: mpsc::UnboundedReceiver<Event>) {
    let current: Arc<Mutex<Option<mpsc::UnboundedSender<Event>>>> = Arc::new(Mutex::new(None));
    let c = current.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Some(tx) = c.lock().await.as_ref() {
                let _ = tx.send(e);
            }
        }
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                continue;
            }
        };
        tracing::info!(%peer, "controller connected");
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        *current.lock().await = Some(tx.clone());
        let relay = relay.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let writer = tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    let mut line = control::encode(&e);
                    line.push('\n');
                    if w.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
            let mut lines = BufReader::new(r).lines();
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.len() <= MAX_LINE => match control::decode::<Command>(&line) {
                        Ok(Command::Ping { seq }) => {
                            let _ = tx.send(Event::Pong { seq });
                        }
                        Ok(cmd) => {
                            relay.send(cmd);
                        }
                        Err(e) => tracing::warn!(%peer, error = %e, "bad control line ignored"),
                    },
                    Ok(Some(_)) => {
                        tracing::warn!(%peer, "control line too long: closing");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            tracing::info!(%peer, "controller disconnected");
            writer.abort();
        });
    }
}
