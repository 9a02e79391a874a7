//! Prometheus metrics: [`Exposition`] writes the text format (0.0.4); [`serve`] answers
//! `GET /metrics` on an address with whatever a render function returns at that moment.

use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// The text exposition format, one metric family at a time.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, "counter", help);
        self.sample(name, &[], value as f64);
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
        self
    }

    /// A family with one sample per label set.
    pub fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: &[(Vec<(&str, &str)>, f64)],
    ) -> &mut Self {
        self.family(name, kind, help);
        for (labels, v) in samples {
            self.sample(name, labels, *v);
        }
        self
    }

    /// A summary from sorted observations (seconds): quantiles 0.5, 0.9, 0.99, sum, count.
    pub fn summary(&mut self, name: &str, help: &str, sorted: &[f64], sum: f64) -> &mut Self {
        self.family(name, "summary", help);
        for q in [0.5, 0.9, 0.99] {
            let v = if sorted.is_empty() {
                f64::NAN
            } else {
                sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
            };
            self.sample(name, &[("quantile", &q.to_string())], v);
        }
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], sorted.len() as f64);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `addr` and serves the metrics until the process exits. Binding errors are
/// returned at once; the server itself runs on a spawned task.
pub async fn serve(addr: &str, render: Render) -> Result<std::net::SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| MetricsError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // Read the request head (bounded); only its first line matters.
                while n < buf.len() {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        conn.read(&mut buf[n..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(k)) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/metrics" || path == "/" {
                    // Rendering may wait on a lock; it must not stall the runtime.
                    let body = tokio::task::spawn_blocking(move || render()).await;
                    match body {
                        Ok(body) => ("200 OK", body),
                        Err(_) => (
                            "500 Internal Server Error",
                            "rendering failed\n".to_string(),
                        ),
                    }
                } else {
                    ("404 Not Found", "not found; try /metrics\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_text_format() {
        let mut e = Exposition::default();
        e.counter("x_total", "Xs.", 3).labelled(
            "y",
            "gauge",
            "Ys.",
            &[(vec![("node", "a\"b")], 1.5)],
        );
        e.summary("lat_seconds", "Latency.", &[0.1, 0.2, 0.3, 0.4], 1.0);
        let t = e.finish();
        assert!(t.contains("# TYPE x_total counter\nx_total 3\n"), "{t}");
        assert!(t.contains("y{node=\"a\\\"b\"} 1.5\n"), "{t}");
        assert!(t.contains("lat_seconds{quantile=\"0.5\"} 0.2\n"), "{t}");
        assert!(t.contains("lat_seconds{quantile=\"0.99\"} 0.4\n"), "{t}");
        assert!(t.contains("lat_seconds_count 4\n"), "{t}");
    }

    #[tokio::test]
    async fn serves_over_http() {
        let addr = serve("127.0.0.1:0", Arc::new(|| "up 1\n".to_string()))
            .await
            .unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("\r\n\r\nup 1\n"), "{out}");
    }
}
