//! `palisade-noded`: enforces the control plane's policies on this node.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use palisade_noded::enforce::Enforcer;
use palisade_noded::localapi;
use palisade_noded::lsm::events as lsm_events;
use palisade_noded::lsm::{self, Lsm, LsmHook};
use palisade_noded::net::Datapath;
use palisade_noded::net::disabled::NoNetwork;
use palisade_noded::net::failsafe;
use palisade_noded::net::{events, pinning, xdp::NetFirewall};
use palisade_noded::probes;
use palisade_noded::sched::SchedHook;
use palisade_noded::seccomp::profiles::{self, Profiles, ProfilesHook};
use palisade_noded::session::cache::NodeCache;
use palisade_noded::session::{self, SessionConfig, failover};
use palisade_pki::{PkiDir, Role};
use palisade_proto::v1;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod exec_cmd;
mod node_local;

#[derive(Parser, Debug)]
#[command(
    name = "palisade-noded",
    version,
    about = "Palisade node daemon",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    /// Without a subcommand: run the daemon.
    #[command(flatten)]
    run: Args,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run the daemon (the default when no subcommand is given).
    Run(Args),
    /// Run a command under a seccomp profile in force on this node.
    Exec(exec_cmd::ExecArgs),
    /// Fleet simulation for tests and benchmarks: many node sessions in this process with
    /// the real session and reconciliation code and a kernel backend that only records.
    Simulate(SimArgs),
    /// Remove every program, link and map the daemon attached or pinned.
    Cleanup {
        /// The pin root the daemon used.
        #[arg(long, env = "PALISADE_BPFFS_ROOT", default_value = pinning::DEFAULT_ROOT)]
        bpffs_root: PathBuf,
    },
    #[command(flatten)]
    Doc(palisade_ops::clidoc::DocCommand),
}

/// Where the control plane is and how to authenticate to it (the daemon and `simulate`).
#[derive(clap::Args, Debug)]
struct ControlPlaneArgs {
    /// Control plane URL; several, comma-separated, for the replicas of a highly available
    /// control plane: tried in order, a failed connect or a dropped session moves on to the
    /// next one.
    #[arg(
        long,
        env = "PALISADE_CONTROLPLANE",
        default_value = "https://127.0.0.1:7443"
    )]
    controlplane: String,
    /// PKI directory (ca.pem and nodes/NAME.pem, nodes/NAME.key; `simulate` issues missing
    /// node certificates from its CA).
    #[arg(long, env = "PALISADE_PKI", default_value = "/var/lib/palisade/pki")]
    pki: PathBuf,
    /// Name the control plane's certificate must carry.
    #[arg(long, default_value = palisade_pki::SERVER_NAME)]
    tls_server_name: String,
}

#[derive(clap::Args, Debug)]
struct Args {
    #[command(flatten)]
    cp: ControlPlaneArgs,
    /// This node's name; must match the name in its certificate.
    #[arg(long, env = "PALISADE_NODE_NAME", required = true)]
    name: Option<String>,
    /// Interface to guard with the XDP (ingress) and TC (egress) firewall. Without it the
    /// daemon enforces no network rule and reports them all unenforced.
    #[arg(long, env = "PALISADE_IFACE")]
    iface: Option<String>,
    /// Do not load the BPF-LSM file/exec programs (file and exec rules are reported unenforced).
    #[arg(long)]
    no_lsm: bool,
    /// Do not keep the session with the control plane open whatever the policies say (by
    /// default TCP to its address and port, and from it to this host's ephemeral ports, is
    /// allowed, so no revision can cut this node off from the control plane that would roll
    /// it back; loopback needs no such rule).
    #[arg(long)]
    no_control_plane_failsafe: bool,
    /// How often protected paths are resolved to inodes again, in milliseconds (0: never).
    #[arg(long, default_value_t = 1000)]
    lsm_rescan_ms: u64,
    /// Size of the LSM programs' event ring buffer, in bytes: a power-of-two multiple of
    /// the page size. Events that find it full are counted and reported as lost.
    #[arg(
        long,
        env = "PALISADE_LSM_RINGBUF_BYTES",
        value_name = "BYTES",
        default_value_t = lsm::DEFAULT_RINGBUF_BYTES,
        value_parser = lsm::parse_ringbuf_bytes
    )]
    lsm_ringbuf_bytes: u32,
    /// Where programs, links and maps are pinned (a directory on a BPF filesystem). Killing
    /// the daemon leaves the last state enforced from there; a restart adopts it.
    #[arg(long, env = "PALISADE_BPFFS_ROOT", default_value = pinning::DEFAULT_ROOT)]
    bpffs_root: PathBuf,
    /// Node labels, matched by policies' node selectors (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
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
    /// Serve Prometheus metrics (plain HTTP) on this address, e.g. 127.0.0.1:9465.
    #[arg(long, env = "PALISADE_METRICS")]
    metrics: Option<String>,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "PALISADE_LOG_JSON")]
    log_json: bool,
    /// TOML file of settings (keys are these flags' long names); flags and environment
    /// variables override it.
    #[arg(long, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    /// Check the settings (flags, environment, config file) and exit without starting.
    #[arg(long)]
    check_config: bool,
    /// Local API socket (`palisade-noded exec` fetches profiles here).
    #[arg(long, env = "PALISADE_API_SOCKET", default_value = localapi::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Where every seccomp profile in force is written as OCI JSON (NAME.json).
    #[arg(long, env = "PALISADE_SECCOMP_DIR", default_value = profiles::DEFAULT_DIR)]
    seccomp_dir: PathBuf,
    /// Local state: the last enforced desired state (sled), re-applied at start so that a
    /// restart without the control plane enforces the same revisions.
    #[arg(
        long,
        env = "PALISADE_STATE_DIR",
        default_value = "/var/lib/palisade/node"
    )]
    state_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Node names are PREFIX0000, PREFIX0001, ...
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    #[command(flatten)]
    cp: ControlPlaneArgs,
    /// A label every node registers with (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A label for a range of node indexes (repeatable), e.g. 100-199:tier=big.
    #[arg(long = "label-nodes", value_name = "FIRST-LAST:KEY=VALUE")]
    label_nodes: Vec<String>,
    /// Nodes whose backend fails plans containing --fail-rule: indexes, ranges (150-159)
    /// or names, comma-separated.
    #[arg(long, value_name = "LIST")]
    fail_nodes: Option<String>,
    /// The rule name that makes --fail-nodes fail.
    #[arg(long, value_name = "RULE", requires = "fail_nodes")]
    fail_rule: Option<String>,
    /// Append one JSON line per apply and per connection change to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Nodes connecting at once.
    #[arg(long, default_value_t = 100)]
    connect_batch: usize,
    /// Synthetic audit events each node sends through its session (denied UDP packets).
    #[arg(long, default_value_t = 0, value_name = "N")]
    audit_events: u64,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long)]
    duration: Option<u64>,
}

async fn simulate(a: SimArgs) -> Result<()> {
    use palisade_noded::sim;
    let name = |i: usize| format!("{}{i:04}", a.name_prefix);
    let cfg = sim::SimConfig {
        nodes: a.nodes,
        name_prefix: a.name_prefix.clone(),
        urls: failover::parse_urls(&a.cp.controlplane)?,
        server_name: a.cp.tls_server_name.clone(),
        pki: a.cp.pki.clone(),
        labels: parse_labels(&a.labels)?,
        label_nodes: a
            .label_nodes
            .iter()
            .map(|s| sim::parse_label_nodes(s))
            .collect::<Result<_, _>>()?,
        fail_nodes: match &a.fail_nodes {
            Some(l) => sim::parse_node_list(l, name)?,
            None => Default::default(),
        },
        fail_rule: a.fail_rule.clone(),
        record: a.record.clone(),
        connect_batch: a.connect_batch,
        audit_events: a.audit_events,
    };
    let run = sim::run(cfg);
    tokio::select! {
        r = run => r?,
        _ = shutdown_signal() => {}
        _ = async {
            match a.duration {
                Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    Ok(())
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
    let argv = palisade_ops::config::argv_with_file(
        &<Cli as clap::CommandFactory>::command(),
        std::env::args_os().collect(),
        "PALISADE_CONFIG",
    )?;
    let cli = Cli::parse_from(argv);
    palisade_ops::logging::init(match &cli.cmd {
        Some(Sub::Run(a)) => a.log_json,
        _ => cli.run.log_json,
    });
    let args = match cli.cmd {
        None => cli.run,
        Some(Sub::Run(a)) => a,
        Some(Sub::Exec(a)) => return exec_cmd::exec(a),
        Some(Sub::Simulate(a)) => return simulate(a).await,
        Some(Sub::Doc(doc)) => {
            doc.run(<Cli as clap::CommandFactory>::command())?;
            return Ok(());
        }
        Some(Sub::Cleanup { bpffs_root }) => {
            let removed = pinning::cleanup(&bpffs_root)
                .with_context(|| format!("cleaning up {}", bpffs_root.display()))?;
            for p in &removed {
                println!("removed {}", p.display());
            }
            println!(
                "cleanup: {} pins removed under {}",
                removed.len(),
                bpffs_root.display()
            );
            return Ok(());
        }
    };
    let Some(name) = args.name.clone() else {
        bail!("--name is required to run the daemon");
    };
    let labels = parse_labels(&args.labels)?;
    let urls = failover::parse_urls(&args.cp.controlplane)?;
    if args.check_config {
        println!(
            "{}",
            palisade_ops::config::checked("palisade-noded", args.config.as_deref())
        );
        return Ok(());
    }
    let pki = PkiDir::new(&args.cp.pki);
    let identity = pki.cert_paths(Role::Node, &name);
    if !identity.cert.exists() {
        bail!(
            "no certificate for node {:?} at {}: issue one with `palisadectl pki issue {} --role node --name {}`",
            name,
            identity.cert.display(),
            args.cp.pki.display(),
            name
        );
    }

    // Exec tracking (kernel BTF parsing) and the /proc seed run while the network programs
    // load and verify.
    let sched_start = std::thread::spawn(node_local::start_sched);
    let mut capabilities = probes::probe_all();
    for c in &capabilities {
        tracing::info!(capability = %c.name, available = c.available, detail = %c.detail, "probe");
    }
    let backend: Box<dyn Datapath>;
    let mut net_ring = None;
    if let Some(iface) = args.iface.clone() {
        let mut fw = NetFirewall::attach(&iface, &args.bpffs_root, args.events_per_sec)
            .with_context(|| {
                format!(
                    "cannot enforce network rules on {iface} (pins under {})",
                    args.bpffs_root.display()
                )
            })?;
        tracing::info!(
            iface = %iface,
            xdp = %fw.xdp.mode,
            adopted = fw.xdp.adopted,
            egress = ?fw.tc.as_ref().map(|t| t.mode.clone()),
            pins = %fw.pin_dir().display(),
            "network firewall attached"
        );
        net_ring = Some(fw.take_events()?);
        capabilities.insert(
            0,
            v1::Capability {
                name: "xdp".into(),
                available: true,
                detail: format!(
                    "{} on {iface} in {} mode",
                    if fw.xdp.adopted {
                        "adopted"
                    } else {
                        "attached"
                    },
                    fw.xdp.mode
                ),
            },
        );
        capabilities.insert(
            1,
            v1::Capability {
                name: "tc-egress".into(),
                available: fw.tc.is_some(),
                detail: match (&fw.tc, &fw.tc_error) {
                    (Some(t), _) => format!(
                        "{} on {iface} ({})",
                        if t.adopted { "adopted" } else { "attached" },
                        t.mode
                    ),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "unavailable".into(),
                },
            },
        );
        backend = Box::new(fw);
    } else {
        tracing::warn!("no --iface: network rules will be reported unenforced");
        capabilities.insert(
            0,
            v1::Capability {
                name: "xdp".into(),
                available: false,
                detail: "no --iface given".into(),
            },
        );
        backend = Box::new(NoNetwork);
    }
    let lsm = if args.no_lsm {
        Lsm::Unavailable("disabled with --no-lsm".into())
    } else {
        let probe_failure = capabilities
            .iter()
            .find(|c| c.name == probes::BPF_LSM && !c.available)
            .map(|c| c.detail.as_str());
        Lsm::load(
            args.events_per_sec,
            args.lsm_ringbuf_bytes,
            Some(&args.bpffs_root),
            probe_failure,
        )
    };
    match &lsm {
        Lsm::Active(_) => tracing::info!(
            ringbuf_bytes = args.lsm_ringbuf_bytes,
            "BPF-LSM file/exec programs attached"
        ),
        Lsm::Unavailable(why) => {
            tracing::warn!(reason = %why, "BPF-LSM programs not loaded: file and exec rules will be reported unenforced")
        }
    }
    capabilities.push(lsm.capability());
    let lsm = Arc::new(Mutex::new(lsm));
    let lsm_ring = match &mut *lsm.lock().expect("lsm lock") {
        Lsm::Active(l) => Some(l.take_events()?),
        Lsm::Unavailable(_) => None,
    };
    let (sched, tracker, sched_caps) = sched_start
        .join()
        .map_err(|_| anyhow::anyhow!("starting exec tracking panicked"))?;
    capabilities.extend(sched_caps);
    let mut enforcer = Enforcer::new(backend);
    if !args.no_control_plane_failsafe {
        let ephemeral = failsafe::ephemeral_ports();
        let mut targets = Vec::new();
        for url in &urls {
            match failsafe::resolve(url) {
                Ok(t) => targets.push(t),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "no control-plane failsafe for this URL: a policy could cut this node off from it")
                }
            }
        }
        if !targets.is_empty() {
            match failsafe::policy(&targets, ephemeral) {
                Ok(policy) => {
                    for t in targets.iter().filter(|t| !t.addrs.is_empty()) {
                        tracing::info!(addresses = ?t.addrs, port = t.port, replies_to = %format!("{}-{}", ephemeral.0, ephemeral.1),
                            "control-plane failsafe: the session with the control plane stays open whatever the policies say");
                    }
                    enforcer.set_failsafe(policy);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no control-plane failsafe: a policy could cut this node off from the control plane")
                }
            }
        }
    }
    enforcer.add_backend(Box::new(LsmHook::new(lsm.clone())));
    enforcer.set_capabilities(capabilities.clone());
    let profiles = Arc::new(Mutex::new(Profiles::new(Some(args.seccomp_dir.clone()))));
    enforcer.add_backend(Box::new(ProfilesHook(profiles.clone())));
    enforcer.add_backend(Box::new(SchedHook(sched.clone())));
    // The last desired state this node enforced: applied again before the control plane is
    // reached, so every backend enforces it and the status names its revisions.
    let cache = match NodeCache::open(&args.state_dir) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "no local state cache: a restart without the control plane will enforce only what is pinned in the kernel");
            None
        }
    };
    match cache.as_ref().map(|c| c.load()) {
        Some(Ok(Some(desired))) => {
            let status = enforcer.apply(&desired);
            tracing::info!(
                policies = ?status.policies.iter().map(|p| format!("{}@{}", p.name, p.revision)).collect::<Vec<_>>(),
                error = %status.last_error,
                "re-applied the cached desired state"
            );
        }
        Some(Ok(None)) | None => {}
        Some(Err(e)) => {
            tracing::error!(error = %e, "cached desired state unreadable; waiting for the control plane (pinned maps keep enforcing)")
        }
    }
    let enforcer = Arc::new(Mutex::new(enforcer));
    localapi::serve(
        &args.api_socket,
        node_local::api_handler(profiles, sched.clone(), tracker.clone()),
    )?;

    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(8192);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(ring) = net_ring {
        tasks.spawn(events::read_ring(
            ring,
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
        urls,
        server_name: args.cp.tls_server_name.clone(),
        pki,
        identity,
        name: name.clone(),
        labels,
        capabilities,
        spool: args.spool.clone(),
        spool_max_events: args.spool_max_events,
        metrics: args.metrics.clone(),
        exec_events_lost: tracker
            .lock()
            .expect("tracker lock")
            .as_ref()
            .map(|t| t.lost_counter()),
        status_every: SessionConfig::STATUS_EVERY,
    };
    let sess = tokio::spawn(session::run(cfg, enforcer.clone(), ev_rx, cache));

    let result = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down; the pinned programs stay attached and keep enforcing (`palisade-noded cleanup` removes them)");
            Ok(())
        }
        Some(r) = tasks.join_next() => Err(anyhow::anyhow!("a daemon task (audit event reader, re-resolution) stopped: {r:?}")),
        r = sess => Err(anyhow::anyhow!("session task stopped: {r:?}")),
    };
    // Without the daemon nothing classifies new processes: those in scheduler classes get
    // their own attributes back.
    sched.lock().expect("sched lock").restore_all();
    drop(tracker);
    result
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
