//! The daemon's local API: a unix socket (root-only by default) answering one JSON request
//! per connection with one JSON response. `palisade-noded exec` fetches the profile in force
//! here, so the latest revision applies; tests read the process table and class counts.
//!
//! Request: `{"get":"profile","name":"web"}`, `{"get":"process","pid":42}`, `{"get":"sched"}`.
//! Response: `{"ok": VALUE}` or `{"error": "what went wrong"}`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/palisade/noded.sock";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot reach the node daemon at {path}: {source} (is palisade-noded running with --api-socket {path}?)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("local API at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("local API at {path}: bad response: {detail}")]
    BadResponse { path: PathBuf, detail: String },
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "get", rename_all = "snake_case")]
pub enum Request {
    Profile { name: String },
    Process { pid: u32 },
    Sched,
}

pub type Handler = Arc<dyn Fn(Request) -> Result<Value, String> + Send + Sync>;

/// Listens on `path` (replacing a stale socket) and answers in a background thread.
pub fn serve(path: &Path, handler: Handler) -> Result<(), ApiError> {
    let err = |source| ApiError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    std::thread::Builder::new()
        .name("local-api".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    if let Err(e) = answer(conn, &handler) {
                        tracing::debug!(error = %e, "local API connection failed");
                    }
                });
            }
        })
        .map_err(err)?;
    Ok(())
}

fn answer(conn: UnixStream, handler: &Handler) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match handler(req) {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": e }),
        },
        Err(e) => json!({ "error": format!("bad request: {e}") }),
    };
    let mut w = &conn;
    w.write_all(format!("{response}\n").as_bytes())
}

/// Sends one request and returns the `ok` value.
pub fn request(path: &Path, req: &Request) -> Result<Value, ApiError> {
    let conn = UnixStream::connect(path).map_err(|source| ApiError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let io = |source| ApiError::Io {
        path: path.to_path_buf(),
        source,
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut w = &conn;
    w.write_all(
        format!(
            "{}\n",
            serde_json::to_string(req).expect("request serializes")
        )
        .as_bytes(),
    )
    .map_err(io)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).map_err(io)?;
    let mut v: Value = serde_json::from_str(&line).map_err(|e| ApiError::BadResponse {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(ApiError::Refused(e.to_string()));
    }
    v.get_mut("ok")
        .map(Value::take)
        .ok_or_else(|| ApiError::BadResponse {
            path: path.to_path_buf(),
            detail: format!("neither ok nor error in {line:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        serve(
            &sock,
            Arc::new(|r| match r {
                Request::Profile { name } if name == "web" => Ok(json!({"name": name})),
                Request::Profile { name } => Err(format!("no seccomp profile named {name:?}")),
                _ => Ok(Value::Null),
            }),
        )
        .unwrap();
        let v = request(&sock, &Request::Profile { name: "web".into() }).unwrap();
        assert_eq!(v["name"], "web");
        let e = request(&sock, &Request::Profile { name: "x".into() }).unwrap_err();
        assert!(e.to_string().contains("no seccomp profile named \"x\""));
        let e = request(&dir.path().join("nope.sock"), &Request::Sched).unwrap_err();
        assert!(e.to_string().contains("cannot reach"));
    }
}
