//! Accepting mutual-TLS connections: each handshake runs in its own task with a timeout
//! (a slow or hostile client never holds up the others) and uses the configuration current
//! at that moment, so renewed certificates and revocations apply without a restart.
//!
//! Admission: at most [`MAX_HANDSHAKES`] handshakes run at once, the others wait their turn
//! in order of arrival. When every node of a large fleet reconnects at once (a restarted
//! control plane), running all handshakes together would make each as slow as all of them
//! (on two cores, 10,000 handshakes take seconds), so most would outlast the nodes' connect
//! timeout and be repeated; in turn, each finishes quickly and the rest wait. A connection
//! that waited [`STALE_AFTER`] for its turn is closed without a handshake: its node (5 s
//! connect timeout) is about to give up on it anyway, and retries after its backoff.

use palisade_pki::server_tls::ReloadingServerTls;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once (see the module's doc).
pub const MAX_HANDSHAKES: usize = 128;

/// A connection that waited this long for a handshake slot is closed instead.
pub const STALE_AFTER: Duration = Duration::from_secs(4);

/// The listen backlog asked for: a reconnect storm (every node of a fleet connecting
/// within a second after a restart) must not find the accept queue full, which drops the
/// handshake's last ACK and costs the client a retransmit (a second or more). The kernel
/// caps it at `net.core.somaxconn` (4096 by default since Linux 5.4); tokio's own
/// `TcpListener::bind` asks for 1024.
pub const LISTEN_BACKLOG: u32 = 8192;

/// A listener on `addr` (`host:port`; every address it resolves to is tried in turn) with
/// [`LISTEN_BACKLOG`].
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// The stream of established TLS connections on `listener`; ends when dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingServerTls>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    incoming_with(listener, tls, MAX_HANDSHAKES, STALE_AFTER)
}

fn incoming_with(
    listener: TcpListener,
    tls: Arc<ReloadingServerTls>,
    max_handshakes: usize,
    stale_after: Duration,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(max_handshakes));
    let shed = Arc::new(Shed::default());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let arrived = Instant::now();
            let (tls, tx, slots, shed) = (tls.clone(), tx.clone(), slots.clone(), shed.clone());
            tokio::spawn(async move {
                let Ok(slot) = slots.acquire_owned().await else {
                    return;
                };
                if arrived.elapsed() >= stale_after {
                    shed.one();
                    return;
                }
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        drop(slot);
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Connections closed unhandled because they waited too long, told at most once a second.
#[derive(Default)]
struct Shed {
    count: AtomicU64,
    told: std::sync::Mutex<Option<Instant>>,
}

impl Shed {
    fn one(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut told = self.told.lock().expect("shed lock");
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *told = Some(Instant::now());
            tracing::warn!(
                shed_total = n,
                waited_secs = STALE_AFTER.as_secs(),
                max_handshakes = MAX_HANDSHAKES,
                "connections closed without a TLS handshake: they waited too long for one (a reconnect storm?); their nodes retry"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_asks_for_the_long_backlog() {
        let l = listen("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        // `ss` shows a listener's backlog as its Send-Q; without `ss`, accepting is all.
        if let Ok(out) = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let send_q: u32 = text
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("ss: {text:?}"));
            assert_eq!(send_q, LISTEN_BACKLOG.min(somaxconn), "{text}");
        }
        let c = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let (a, c) = tokio::join!(l.accept(), c);
        a.unwrap();
        c.unwrap();
        assert!(listen("no-such-host.invalid:1").await.is_err());
    }

    #[tokio::test]
    async fn a_connection_that_waited_too_long_for_a_handshake_is_closed_unhandled() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = palisade_pki::PkiDir::new(dir.path().join("pki"));
        pki.init(&[], false).unwrap();
        let tls = Arc::new(ReloadingServerTls::new(pki).unwrap());
        let l = listen("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _incoming = incoming_with(l, tls, 1, Duration::from_millis(300));
        // The one slot: a client that connects and says nothing holds it for 500 ms.
        let silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
        drop(silent);
        // The slot is free, but the next connection waited past the limit for it: closed
        // at once, unhandled (a handshake would wait for its hello until 10 s).
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(15), waiting.read(&mut buf))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without a byte of TLS");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
