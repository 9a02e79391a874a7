//! `palisade-controlplane`: stores policy revisions and pushes them to node daemons.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use palisade_controlplane::audit::AuditHub;
use palisade_controlplane::audit::Shares;
use palisade_controlplane::auditlog::{self, Retention};
use palisade_controlplane::export::{self, ExportConfig, ExportHandle};
use palisade_controlplane::{ControlPlane, serve, store};
use palisade_pki::PkiDir;
use std::path::PathBuf;
use std::time::Duration;

/// The fleet the open-file limit is checked against at start: below it, a warning.
const MIN_NODES_FOR_FILES: usize = 10_000;
/// Files besides node connections: the store, the audit log, operators, metrics.
const SPARE_FILES: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "palisade-controlplane",
    version,
    about = "Palisade control plane",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Only the hidden documentation commands: the daemon itself takes flags alone.
    #[command(subcommand)]
    doc: Option<palisade_ops::clidoc::DocCommand>,
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Args, Debug)]
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
    /// Where policy revisions live: `sled` (the default, in --data) or
    /// `etcd://host:2379,host:2379,host:2379` (an etcd cluster shared by replicas; needs the
    /// build feature `etcd`). The audit log stays in --data either way.
    #[arg(long, env = "PALISADE_STORE")]
    store: Option<String>,
    /// The URL nodes and operators reach this replica at, as other replicas list it
    /// (`palisadectl controlplanes`); default: https:// and the --listen address.
    #[arg(long, env = "PALISADE_ADVERTISE")]
    advertise: Option<String>,
    /// PKI directory (ca.pem, controlplane.pem, controlplane.key).
    #[arg(long, env = "PALISADE_PKI", default_value = "/var/lib/palisade/pki")]
    pki: PathBuf,
    /// Audit log size bound (MiB); the oldest events are dropped beyond it.
    #[arg(long, env = "PALISADE_AUDIT_MAX_MB", default_value_t = 256)]
    audit_max_mb: u64,
    /// Audit log age bound (hours).
    #[arg(long, env = "PALISADE_AUDIT_MAX_AGE_HOURS", default_value_t = 168)]
    audit_max_age_hours: u64,
    /// Audit events per second accepted from all nodes together; each node sending gets
    /// an equal share of it (at least --audit-node-min-rate), and what a node sends beyond
    /// its share is counted as lost for it, not stored. 0: no limit.
    #[arg(long, env = "PALISADE_AUDIT_RATE", default_value_t = 1_000_000.0)]
    audit_rate: f64,
    /// The smallest ingest share of one node (events per second).
    #[arg(long, env = "PALISADE_AUDIT_NODE_MIN_RATE", default_value_t = 1_000.0)]
    audit_node_min_rate: f64,
    /// The fraction of the audit log one node's events may fill (or 2/nodes when that is
    /// more); beyond it the node's new events are counted as lost. 0: no limit.
    #[arg(long, env = "PALISADE_AUDIT_NODE_SHARE", default_value_t = 0.125)]
    audit_node_share: f64,
    /// Also write every audit event as one JSON line (as `palisadectl audit tail -o json`
    /// prints it) to DIR/audit.jsonl, for log shippers to tail; rotated files are
    /// DIR/audit-<UTC yyyymmddThhmmss>-<n>.jsonl. Off when not given.
    #[arg(long, env = "PALISADE_AUDIT_EXPORT_DIR", value_name = "DIR")]
    audit_export_dir: Option<PathBuf>,
    /// Rotate the audit export's active file before it passes this size (MiB).
    #[arg(
        long,
        env = "PALISADE_AUDIT_EXPORT_MAX_MB",
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    audit_export_max_mb: u64,
    /// Rotate the audit export's active file once its first line is this old (30s, 15m,
    /// 1h, 1d).
    #[arg(
        long,
        env = "PALISADE_AUDIT_EXPORT_MAX_AGE",
        default_value = "1h",
        value_parser = positive_duration
    )]
    audit_export_max_age: Duration,
    /// Rotated audit export files to keep; the oldest beyond are deleted.
    #[arg(
        long,
        env = "PALISADE_AUDIT_EXPORT_KEEP",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    audit_export_keep: u64,
    /// Serve Prometheus metrics (plain HTTP) on this address, e.g. 127.0.0.1:9464.
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
}

/// A duration flag (see `palisade_ops::config::parse_duration`) that must not be zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match palisade_ops::config::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The audit export, when `--audit-export-dir` is given (refused, naming the directory,
/// when it cannot be created or written); its counters join the metrics.
fn start_export(args: &Args, cp: &ControlPlane) -> Result<Option<ExportHandle>> {
    let Some(dir) = &args.audit_export_dir else {
        return Ok(None);
    };
    let cfg = ExportConfig {
        dir: dir.clone(),
        max_bytes: args.audit_export_max_mb.saturating_mul(1 << 20),
        max_age: args.audit_export_max_age,
        keep: usize::try_from(args.audit_export_keep).unwrap_or(usize::MAX),
    };
    let handle = export::start(&cfg, &cp.audit)?;
    cp.exports
        .lock()
        .expect("exports lock")
        .push(handle.stats());
    Ok(Some(handle))
}

#[tokio::main]
async fn main() -> Result<()> {
    let argv = palisade_ops::config::argv_with_file(
        &Cli::command(),
        std::env::args_os().collect(),
        "PALISADE_CONFIG",
    )?;
    let args = match Cli::parse_from(argv) {
        Cli { doc: None, args } => args,
        Cli { doc: Some(doc), .. } => {
            doc.run(Cli::command())?;
            return Ok(());
        }
    };
    if args.check_config {
        println!(
            "{}",
            palisade_ops::config::checked("palisade-controlplane", args.config.as_deref())
        );
        return Ok(());
    }
    palisade_ops::logging::init(args.log_json);
    // One file per connected node: 10,000 nodes need far more than the usual soft limit
    // of 1,024, so the soft limit goes up to the hard one (systemd: `LimitNOFILE=`).
    let files = palisade_ops::limits::raise_nofile();
    if files.fits(MIN_NODES_FOR_FILES, SPARE_FILES) {
        tracing::info!(
            was = files.was,
            now = files.now,
            "open-file limit raised to the hard limit (one file per connected node)"
        );
    } else {
        tracing::warn!(
            was = files.was,
            now = files.now,
            nodes = files.now.saturating_sub(SPARE_FILES as u64),
            "open-file limit allows only this many connected nodes; raise the hard limit (LimitNOFILE=)"
        );
    }
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let store = store::open(args.store.as_deref(), &args.data)?;
    let pki = PkiDir::new(&args.pki);
    let listener = palisade_controlplane::tls::listen(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data = %args.data.display(), store = args.store.as_deref().unwrap_or("sled"), "control plane listening");
    let retention = Retention {
        max_bytes: args.audit_max_mb << 20,
        max_age_secs: args.audit_max_age_hours * 3600,
    };
    let shares = Shares {
        total_rate: args.audit_rate,
        min_node_rate: args.audit_node_min_rate,
        min_storage_fraction: args.audit_node_share,
    };
    let audit = AuditHub::with_shares(
        Box::new(auditlog::open_in(&args.data, retention)?),
        retention,
        shares,
    )?;
    let cp = ControlPlane::new(store, audit);
    // Subscribed before anything is served, so the export misses no event.
    let export = start_export(&args, &cp)?;
    let listen = listener.local_addr()?.to_string();
    let url = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("https://{listen}"));
    palisade_controlplane::replica::join(
        &cp,
        palisade_controlplane::replica::default_me(&url, &listen),
    )
    .context("cannot join the other control-plane replicas")?;
    if let Some(addr) = &args.metrics {
        let m = cp.clone();
        let at = palisade_ops::metrics::serve(
            addr,
            std::sync::Arc::new(move || palisade_controlplane::metrics::render(&m)),
        )
        .await?;
        tracing::info!(addr = %at, "metrics on http://{at}/metrics");
    }
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
    if let Some(x) = export {
        // What the exporter already received is written and flushed before exit.
        tokio::task::spawn_blocking(move || x.stop())
            .await
            .context("stopping the audit export")?;
    }
    Ok(())
}
