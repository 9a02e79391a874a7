//! Accepting mutual-TLS connections: each handshake runs in its own task with a timeout
//! (a slow or hostile client never holds up the others) and uses the configuration current
//! at that moment, so renewed certificates and revocations apply without a restart.

use palisade_pki::server_tls::ReloadingServerTls;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let (tx, rx) = mpsc::channel(64);
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
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
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
}
