//! `palisade-controlplane`: stores policy revisions and pushes them to node daemons.

use anyhow::{Context, Result};
use clap::Parser;
use palisade_controlplane::{serve, service::ControlPlane, store::SledStore};
use palisade_pki::PkiDir;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "palisade-controlplane",
    version,
    about = "Palisade control plane"
)]
struct Args {
    /// Address to serve gRPC (mutual TLS) on.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:7443")]
    listen: String,
    /// Directory for the policy store.
    #[arg(
        long,
        env = "PALISADE_DATA",
        default_value = "/var/lib/palisade/controlplane"
    )]
    data: PathBuf,
    /// PKI directory (ca.pem, controlplane.pem, controlplane.key).
    #[arg(long, env = "PALISADE_PKI", default_value = "/var/lib/palisade/pki")]
    pki: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let store = SledStore::open(&args.data)?;
    let pki = PkiDir::new(&args.pki);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data = %args.data.display(), "control plane listening");
    let cp = ControlPlane::new(Box::new(store));
    serve(listener, &pki, cp, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}
