//! `palisade-noded`: enforces the control plane's policies on this node.

use anyhow::{Context, Result, bail};
use clap::Parser;
use palisade_noded::enforce::Enforcer;
use palisade_noded::session::{self, SessionConfig};
use palisade_noded::{events, xdp::XdpFirewall};
use palisade_pki::{PkiDir, Role};
use palisade_proto::v1;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser, Debug)]
#[command(name = "palisade-noded", version, about = "Palisade node daemon")]
struct Args {
    /// Control plane URL.
    #[arg(
        long,
        env = "PALISADE_CONTROLPLANE",
        default_value = "https://127.0.0.1:7443"
    )]
    controlplane: String,
    /// PKI directory (ca.pem and nodes/NAME.pem, nodes/NAME.key).
    #[arg(long, env = "PALISADE_PKI", default_value = "/var/lib/palisade/pki")]
    pki: PathBuf,
    /// This node's name; must match the name in its certificate.
    #[arg(long, env = "PALISADE_NODE_NAME")]
    name: String,
    /// Interface to guard with the XDP firewall.
    #[arg(long, env = "PALISADE_IFACE")]
    iface: String,
    /// Node labels, matched by policies' node selectors (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Name the control plane's certificate must carry.
    #[arg(long, default_value = palisade_pki::SERVER_NAME)]
    tls_server_name: String,
    /// Most audit events the kernel emits per CPU per second; the rest are counted.
    #[arg(long, default_value_t = 1000)]
    events_per_sec: u32,
    /// Spool file for audit events the control plane has not acknowledged yet (kept across
    /// restarts); without it they are kept in memory only.
    #[arg(long, env = "PALISADE_SPOOL")]
    spool: Option<PathBuf>,
    /// Most unacknowledged audit events kept; beyond it they are counted and reported lost.
    #[arg(long, env = "PALISADE_SPOOL_MAX_EVENTS", default_value_t = 1_000_000)]
    spool_max_events: usize,
}

fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for l in raw {
        let Some((k, v)) = l.split_once('=') else {
            bail!("label {l:?} is not KEY=VALUE");
        };
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(labels)
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
    let labels = parse_labels(&args.labels)?;
    let pki = PkiDir::new(&args.pki);
    let identity = pki.cert_paths(Role::Node, &args.name);
    if !identity.cert.exists() {
        bail!(
            "no certificate for node {:?} at {}: issue one with `palisadectl pki issue {} --role node --name {}`",
            args.name,
            identity.cert.display(),
            args.pki.display(),
            args.name
        );
    }

    let mut fw = XdpFirewall::attach(&args.iface, args.events_per_sec)
        .with_context(|| format!("cannot enforce network rules on {}", args.iface))?;
    tracing::info!(iface = %args.iface, mode = fw.mode(), "XDP firewall attached");
    let ring = fw.take_events()?;
    let capabilities = vec![v1::Capability {
        name: "xdp".into(),
        available: true,
        detail: format!("attached to {} in {} mode", args.iface, fw.mode()),
    }];
    let enforcer = Arc::new(Mutex::new(Enforcer::new(Box::new(fw))));

    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(8192);
    let reader = tokio::spawn(events::read_ring(
        ring,
        args.name.clone(),
        enforcer.clone(),
        ev_tx,
    ));
    let cfg = SessionConfig {
        url: args.controlplane.clone(),
        server_name: args.tls_server_name.clone(),
        pki,
        identity,
        name: args.name.clone(),
        labels,
        capabilities,
        spool: args.spool.clone(),
        spool_max_events: args.spool_max_events,
    };
    let sess = tokio::spawn(session::run(cfg, enforcer.clone(), ev_rx));

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down; the XDP program is detached on exit"),
        r = reader => bail!("audit event reader stopped: {r:?}"),
        r = sess => bail!("session task stopped: {r:?}"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
