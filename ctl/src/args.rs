//! The command tree: every command, flag and argument of `palisadectl` (clap derive), and
//! nothing else. `main.rs` dispatches it to the modules under `cmd/`.

use crate::print::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
pub use palisade_ops::clidoc::Shell;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "palisadectl",
    version,
    about = "Palisade: declarative eBPF policy for Linux fleets"
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    pub output: Format,
    #[command(subcommand)]
    pub cmd: Cmd,
}

// Where the control plane is and who is calling: global flags, read by `client`.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Control plane URL; several, comma-separated, for the replicas of a highly available
    /// control plane: a command uses the first that answers (2 s each, in order), `audit
    /// tail` reads every one and merges their events.
    #[arg(
        long,
        global = true,
        env = "PALISADE_CONTROLPLANE",
        default_value = "https://127.0.0.1:7443"
    )]
    pub controlplane: String,
    /// PKI directory holding ca.pem and your certificate.
    #[arg(
        long,
        global = true,
        env = "PALISADE_PKI",
        default_value = "/var/lib/palisade/pki"
    )]
    pub pki: PathBuf,
    /// Which certificate in the PKI directory to use.
    #[arg(
        long,
        global = true,
        env = "PALISADE_IDENTITY",
        default_value = "operator"
    )]
    pub identity: String,
    /// Name the control plane's certificate must carry.
    #[arg(long, global = true, default_value = palisade_pki::SERVER_NAME)]
    pub tls_server_name: String,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Manage the dev PKI.
    #[command(subcommand)]
    Pki(PkiCmd),
    /// Check policy files without contacting the control plane.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Raise the evaluation limits for generated policies (see docs/policy-language.md).
        #[arg(long)]
        large: bool,
    },
    /// Run policy unit tests: events and expected verdicts, against the compiled plan.
    Test {
        file: PathBuf,
        /// The case file (format: docs/policy-language.md).
        #[arg(long)]
        cases: PathBuf,
        #[arg(long)]
        large: bool,
    },
    /// Which rule decides an event, and why.
    Explain {
        file: PathBuf,
        /// An event, e.g. "net ingress tcp 203.0.113.5 -> 10.0.0.1:22" (repeatable).
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long)]
        large: bool,
    },
    /// What applying a policy would change against the revision the control plane stores.
    Diff {
        file: PathBuf,
        #[arg(long)]
        large: bool,
    },
    /// Validate, store and roll out a policy (all nodes at once, or in canary waves).
    Apply {
        file: PathBuf,
        #[command(flatten)]
        rollout: RolloutArgs,
    },
    /// Follow and steer rollouts: status (-w to watch), list, pause, resume, abort.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// The current revision of every policy.
    List,
    /// One revision of a policy (the current one by default), with its source.
    Get {
        name: String,
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Every revision of a policy, oldest first.
    History { name: String },
    /// Store a new revision of a policy with an older revision's content.
    Rollback {
        name: String,
        #[arg(long)]
        to: u64,
    },
    /// Delete a policy (a tombstone revision; roll back to undo).
    Delete { name: String },
    /// Every node, what it should enforce and what it reports enforcing; `nodes label`.
    Nodes {
        #[command(subcommand)]
        cmd: Option<NodesCmd>,
    },
    /// The control-plane replicas: which one drives rollouts, how many nodes each serves,
    /// and whether the store (sled or etcd) answers.
    Controlplanes,
    /// Audit events.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print something in a format other tools read.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Print a shell completion script on stdout.
    ///
    /// E.g. `palisadectl completion bash > ~/.local/share/bash-completion/completions/palisadectl`;
    /// the Debian package installs the bash, zsh and fish scripts.
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (palisadectl.1 and one per subcommand) into DIR: what the
    /// packages install.
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// A seccomp profile as OCI runtime-spec JSON (what nodes write for container runtimes).
    Seccomp {
        /// Profile name, or POLICY/NAME.
        name: String,
        /// Read these policy files instead of the control plane's current policies.
        #[arg(long = "from", value_name = "FILE")]
        from: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PkiCmd {
    /// Create a CA and certificates for the control plane, an operator, a viewer and nodes.
    Init {
        dir: PathBuf,
        /// Node names to issue certificates for (repeatable).
        #[arg(long = "node", default_value = "node-1")]
        nodes: Vec<String>,
        /// Overwrite an existing PKI.
        #[arg(long)]
        force: bool,
    },
    /// Issue one more certificate from an existing CA.
    Issue {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue every certificate again with new keys (with --ca, under a new CA too).
    Rotate {
        dir: PathBuf,
        /// Make a new CA; ca.pem keeps the previous CA trusted until the next rotation.
        #[arg(long)]
        ca: bool,
        /// Days the new certificates are valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke a certificate: the control plane refuses it from its next connection on.
    Revoke {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print recent events; with --follow, keep streaming new ones.
    Tail(TailArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every selected node at once.
    All,
    /// A first wave, then waves of --wave-size, with a health gate between waves.
    Canary,
}

#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// How the new revision reaches the nodes.
    #[arg(long, value_enum, default_value = "all")]
    pub rollout: Strategy,
    /// Canary: size of the first wave, in nodes ("2") or percent ("10%"). Default 1 node.
    #[arg(long, value_name = "N|P%")]
    pub canary: Option<String>,
    /// Canary: size of every later wave, in nodes or percent. Default 25%.
    #[arg(long, value_name = "N|P%")]
    pub wave_size: Option<String>,
    /// Canary: how long each realized wave is watched by the gate before the next starts
    /// (e.g. 30s, 2m). Default 10s.
    #[arg(long, value_name = "DURATION")]
    pub pause: Option<String>,
    /// Canary: wait for `palisadectl rollout resume` after each wave passes its gate.
    #[arg(long)]
    pub manual: bool,
    /// Canary gate: most deny (or would-deny) events per second per node of a wave since it
    /// started. Default: no limit.
    #[arg(long, value_name = "PER_SEC")]
    pub max_deny_rate: Option<f64>,
    /// Canary gate: a node that has not realized the revision after this long fails the
    /// wave. Default 2m.
    #[arg(long, value_name = "DURATION")]
    pub wave_timeout: Option<String>,
    /// Canary gate: a node without a status for this long fails the wave. Default 10s.
    #[arg(long, value_name = "DURATION")]
    pub report_timeout: Option<String>,
    /// Canary: when a gate fails, halt but keep the updated nodes on the new revision
    /// (the default rolls them back).
    #[arg(long)]
    pub no_rollback: bool,
    /// Follow the rollout until it finishes (exit status 1 if it is rolled back or halts).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCmd {
    /// A policy's latest rollout: its waves and every node's state.
    Status {
        policy: String,
        /// Keep watching (progress bars) until the rollout finishes.
        #[arg(short = 'w', long)]
        watch: bool,
        /// List every node, not only those that need attention.
        #[arg(long)]
        all_nodes: bool,
    },
    /// Every policy's latest rollout.
    List,
    /// Start no new wave (nodes already updated stay updated).
    Pause { policy: String },
    /// Continue a paused or waiting rollout; retry a halted wave's gate.
    Resume { policy: String },
    /// Stop the rollout and return every updated node to the previous revision.
    Abort { policy: String },
}

#[derive(Subcommand, Debug)]
pub enum NodesCmd {
    /// Every node: labels, capabilities, connection, desired vs realized revisions (default).
    List,
    /// Set (KEY=VALUE) or remove (KEY-) labels of a node; its policies follow at once.
    Label {
        node: String,
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[arg(short, long)]
    pub follow: bool,
    /// How many recent events to print first.
    #[arg(long, default_value_t = 100)]
    pub last: u32,
    /// Only events from this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only events of this policy.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only events of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only events with this action (deny, would-deny, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events since: a duration ago (30s, 5m, 2h, 1d) or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Read only the replicas --controlplane names, not also the others the store lists.
    #[arg(long)]
    pub named_only: bool,
}
