//! `palisadectl`: Palisade's command line. One module per concern; this file is the
//! command tree and the glue.

mod apply;
mod audit_tail;
mod delete;
mod diff;
mod explain;
mod export;
mod get;
mod history;
mod nodes;
mod output;
mod pki_rotate;
mod policy_test;
mod revision_out;
mod rollback;
mod rollout;
mod rollout_out;
mod validate;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use output::Format;
use palisade_pki::{PkiDir, Role};
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Debug)]
#[command(
    name = "palisadectl",
    version,
    about = "Palisade: declarative eBPF policy for Linux fleets"
)]
struct Cli {
    /// Control plane URL.
    #[arg(
        long,
        global = true,
        env = "PALISADE_CONTROLPLANE",
        default_value = "https://127.0.0.1:7443"
    )]
    controlplane: String,
    /// PKI directory holding ca.pem and your certificate.
    #[arg(
        long,
        global = true,
        env = "PALISADE_PKI",
        default_value = "/var/lib/palisade/pki"
    )]
    pki: PathBuf,
    /// Which certificate in the PKI directory to use.
    #[arg(
        long,
        global = true,
        env = "PALISADE_IDENTITY",
        default_value = "operator"
    )]
    identity: String,
    /// Name the control plane's certificate must carry.
    #[arg(long, global = true, default_value = palisade_pki::SERVER_NAME)]
    tls_server_name: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    output: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
        rollout: apply::RolloutArgs,
    },
    /// Follow and steer rollouts: status (-w to watch), list, pause, resume, abort.
    #[command(subcommand)]
    Rollout(rollout::RolloutCmd),
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
        cmd: Option<nodes::NodesCmd>,
    },
    /// Audit events.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print something in a format other tools read.
    #[command(subcommand)]
    Export(ExportCmd),
}

#[derive(Subcommand, Debug)]
enum ExportCmd {
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
enum PkiCmd {
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
enum AuditCmd {
    /// Print recent events; with --follow, keep streaming new ones.
    Tail(audit_tail::TailArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Pki(PkiCmd::Init { dir, nodes, force }) => {
            let written = PkiDir::new(dir).init(nodes, *force)?;
            println!(
                "wrote a dev PKI to {} ({} files); keep ca.key off nodes",
                dir.display(),
                written.len() + 1
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pki(PkiCmd::Rotate { dir, ca, days }) => pki_rotate::rotate(dir, *ca, *days),
        Cmd::Pki(PkiCmd::Revoke { dir, role, name }) => pki_rotate::revoke(dir, role, name),
        Cmd::Pki(PkiCmd::Issue {
            dir,
            role,
            name,
            days,
        }) => {
            let role: Role = role.parse()?;
            let validity = palisade_pki::Validity::days(*days);
            for p in PkiDir::new(dir).issue_valid(role, name, validity)? {
                println!("wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { files, large } => validate::run(files, *large, cli.output),
        Cmd::Test { file, cases, large } => policy_test::run(file, cases, *large, cli.output),
        Cmd::Explain {
            file,
            events,
            large,
        } => explain::run(file, events, *large, cli.output),
        Cmd::Diff { file, large } => {
            let mut c = PoliciesClient::new(connect(&cli).await?);
            let list = c
                .list(v1::ListRequest {})
                .await
                .map_err(status)?
                .into_inner();
            diff::run(file, &list.policies, *large, cli.output)
        }
        Cmd::Apply { file, rollout } => apply::run(&cli, file, rollout).await,
        Cmd::Rollout(cmd) => rollout::run(&cli, cmd).await,
        Cmd::List => {
            let mut c = PoliciesClient::new(connect(&cli).await?);
            let list = c
                .list(v1::ListRequest {})
                .await
                .map_err(status)?
                .into_inner();
            for p in list.policies {
                match cli.output {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({"policy": p.name, "revision": p.revision, "content_hash": p.content_hash, "author": p.author})
                    ),
                    Format::Text => println!(
                        "{:<24} rev {:<6} {} by {}",
                        p.name,
                        p.revision,
                        &p.content_hash[..12.min(p.content_hash.len())],
                        p.author
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export(ExportCmd::Seccomp { name, from }) => {
            let policies = if from.is_empty() {
                let mut c = PoliciesClient::new(connect(&cli).await?);
                let list = c
                    .list(v1::ListRequest {})
                    .await
                    .map_err(status)?
                    .into_inner();
                list.policies
                    .iter()
                    .map(|p| {
                        palisade_policy::ir::Policy::from_json(&p.ir_json)
                            .map(|ir| (ir, p.revision))
                            .with_context(|| {
                                format!("policy {} revision {}: bad IR", p.name, p.revision)
                            })
                    })
                    .collect::<Result<Vec<_>>>()?
            } else {
                export::policies_from_files(from)?
            };
            let v = export::seccomp_json(&policies, name)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Nodes { cmd } => nodes::run(&cli, cmd.as_ref()).await,
        Cmd::Get { name, revision } => get::run(&cli, name, *revision).await,
        Cmd::History { name } => history::run(&cli, name).await,
        Cmd::Rollback { name, to } => rollback::run(&cli, name, *to).await,
        Cmd::Delete { name } => delete::run(&cli, name).await,
        Cmd::Audit(AuditCmd::Tail(args)) => audit_tail::run(&cli, args).await,
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    // A refused TLS handshake only shows up as a transport error on the first request;
    // name the causes and the likely reasons.
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(&s);
    while let Some(e) = src {
        causes.push(e.to_string());
        src = e.source();
    }
    if s.code() == tonic::Code::Unknown && s.message().contains("transport error") {
        return anyhow::anyhow!(
            "the control plane closed the connection ({}); is this certificate expired, revoked or from another CA? (the control plane logs why)",
            if causes.is_empty() {
                s.message().to_string()
            } else {
                causes.join(": ")
            }
        );
    }
    anyhow::anyhow!("control plane refused: {} ({:?})", s.message(), s.code())
}

async fn connect(cli: &Cli) -> Result<Channel> {
    let pki = PkiDir::new(&cli.pki);
    // A role name picks that role's certificate; anything else names a node's.
    let role: Role = cli.identity.parse().unwrap_or(Role::Node);
    let paths = pki.cert_paths(role, &cli.identity);
    if !paths.cert.exists() {
        bail!(
            "no certificate {} for identity {:?} (use operator, viewer or a node name; create a PKI with `palisadectl pki init {}`)",
            paths.cert.display(),
            cli.identity,
            cli.pki.display()
        );
    }
    let tls = pki.client_tls(&paths, &cli.tls_server_name)?;
    Endpoint::from_shared(cli.controlplane.clone())
        .with_context(|| format!("invalid control plane URL {}", cli.controlplane))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot connect to the control plane at {}",
                cli.controlplane
            )
        })
}
