//! `palisade-noded`: enforces the control plane's policies on this node.

use anyhow::{Context, Result, bail};
use clap::Parser;
use palisade_noded::enforce::{Enforcer, NetBackend, NoNetwork};
use palisade_noded::lsm::{self, Lsm};
use palisade_noded::lsm_events;
use palisade_noded::session::{self, SessionConfig};
use palisade_noded::{events, xdp::XdpFirewall};
use palisade_pki::{PkiDir, Role};
use palisade_proto::v1;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser, Debug)]
#[command(
    name = "palisade-noded",
    version,
    about = "Palisade node daemon",
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
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
    #[arg(long, env = "PALISADE_NODE_NAME", required = true)]
    name: Option<String>,
    /// Interface to guard with the XDP firewall; without it network rules are reported
    /// unenforced.
    #[arg(long, env = "PALISADE_IFACE")]
    iface: Option<String>,
    /// Do not load the BPF-LSM file/exec programs (file and exec rules are reported unenforced).
    #[arg(long)]
    no_lsm: bool,
    /// How often protected paths are resolved again to inodes, in milliseconds (0: never).
    #[arg(long, default_value_t = 1000)]
    lsm_rescan_ms: u64,
    /// Node labels, matched by policies' node selectors (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Name the control plane's certificate must carry.
    #[arg(long, default_value = palisade_pki::SERVER_NAME)]
    tls_server_name: String,
    /// Most audit events the kernel emits per CPU per second; the rest are counted.
    #[arg(long, default_value_t = 1000)]
    events_per_sec: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Removes the daemon's pinned kernel state (detaches the LSM programs it left in force).
    Cleanup,
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(Command::Cleanup) = args.command {
        let n = lsm::cleanup().context("removing pinned LSM links")?;
        println!("removed {n} pinned LSM program link(s)");
        return Ok(());
    }
    let name = args.name.clone().context("--name is required")?;
    let labels = parse_labels(&args.labels)?;
    let pki = PkiDir::new(&args.pki);
    let identity = pki.cert_paths(Role::Node, &name);
    if !identity.cert.exists() {
        bail!(
            "no certificate for node {:?} at {}: issue one with `palisadectl pki issue {} --role node --name {}`",
            name,
            identity.cert.display(),
            args.pki.display(),
            name
        );
    }

    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(8192);
    let mut capabilities = Vec::new();
    let backend: Box<dyn NetBackend>;
    let mut xdp_ring = None;
    if let Some(iface) = &args.iface {
        let mut fw = XdpFirewall::attach(iface, args.events_per_sec)
            .with_context(|| format!("cannot enforce network rules on {iface}"))?;
        tracing::info!(iface = %iface, mode = fw.mode(), "XDP firewall attached");
        capabilities.push(v1::Capability {
            name: "xdp".into(),
            available: true,
            detail: format!("attached to {} in {} mode", iface, fw.mode()),
        });
        let ring = fw.take_events()?;
        backend = Box::new(fw);
        xdp_ring = Some(ring);
    } else {
        tracing::warn!("no --iface: network rules will be reported unenforced");
        capabilities.push(v1::Capability {
            name: "xdp".into(),
            available: false,
            detail: "no --iface given".into(),
        });
        backend = Box::new(NoNetwork);
    }

    let lsm = if args.no_lsm {
        Lsm::Unavailable("disabled with --no-lsm".into())
    } else {
        Lsm::load(args.events_per_sec, true)
    };
    match &lsm {
        Lsm::Active(_) => tracing::info!("BPF-LSM file/exec programs attached"),
        Lsm::Unavailable(why) => {
            tracing::warn!(reason = %why, "BPF LSM unavailable: file and exec rules will be reported unenforced")
        }
    }
    capabilities.push(lsm.capability());
    let lsm = Arc::new(Mutex::new(lsm));
    let lsm_ring = match &mut *lsm.lock().expect("lsm lock") {
        Lsm::Active(l) => Some(l.take_events()?),
        Lsm::Unavailable(_) => None,
    };
    let enforcer = Arc::new(Mutex::new(
        Enforcer::new(backend).with_files(Box::new(lsm.clone())),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(iface_ring) = xdp_ring {
        tasks.spawn(events::read_ring(
            iface_ring,
            name.clone(),
            enforcer.clone(),
            ev_tx.clone(),
        ));
    }
    if let Some(ring) = lsm_ring {
        tasks.spawn(lsm_events::read_ring(
            ring,
            name.clone(),
            lsm.clone(),
            ev_tx.clone(),
        ));
        if args.lsm_rescan_ms > 0 {
            let lsm = lsm.clone();
            let every = std::time::Duration::from_millis(args.lsm_rescan_ms);
            tasks.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = lsm.lock().expect("lsm lock").rescan() {
                        tracing::error!(error = %e, "re-resolving protected paths failed");
                    }
                }
            });
        }
    }
    drop(ev_tx);
    let cfg = SessionConfig {
        url: args.controlplane.clone(),
        server_name: args.tls_server_name.clone(),
        pki,
        identity,
        name: name.clone(),
        labels,
        capabilities,
    };
    let sess = tokio::spawn(session::run(cfg, enforcer.clone(), ev_rx));

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down; the XDP program is detached on exit, LSM programs stay pinned (palisade-noded cleanup removes them)"),
        Some(r) = tasks.join_next() => bail!("a daemon task stopped: {r:?}"),
        _ = sess => bail!("session task stopped"),
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
