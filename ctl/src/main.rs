//! `palisadectl`: Palisade's command line. This file only dispatches: the command tree is
//! in `args.rs`, the connection in `client.rs`, each command in `cmd/`, all printing in
//! `print/`.

mod args;
mod audit_merge;
mod client;
mod cmd;
mod policy_file;
mod print;

use anyhow::Result;
use args::{AuditCmd, Cli, Cmd};
use clap::Parser;
use client::Client;
use print::Printer;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Printer::new(cli.output);
    match run(&cli, out).await {
        Ok(code) => code,
        Err(e) => {
            out.error(&format_args!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli, out: Printer) -> Result<ExitCode> {
    let client = &Client::new(&cli.connection, out);
    match &cli.cmd {
        Cmd::Pki(c) => cmd::pki::run(out, c),
        Cmd::Validate { files, large } => cmd::validate::run(out, files, *large),
        Cmd::Test { file, cases, large } => cmd::policy_test::run(out, file, cases, *large),
        Cmd::Explain {
            file,
            events,
            large,
        } => cmd::explain::run(out, file, events, *large),
        Cmd::Diff { file, large } => cmd::diff::run(client, out, file, *large).await,
        Cmd::Apply { file, rollout } => cmd::apply::run(client, out, file, rollout).await,
        Cmd::Rollout(c) => cmd::rollout::run(client, out, c).await,
        Cmd::List => cmd::list::run(client, out).await,
        Cmd::Get { name, revision } => cmd::get::run(client, out, name, *revision).await,
        Cmd::History { name } => cmd::history::run(client, out, name).await,
        Cmd::Rollback { name, to } => cmd::rollback::run(client, out, name, *to).await,
        Cmd::Delete { name } => cmd::delete::run(client, out, name).await,
        Cmd::Nodes { cmd } => cmd::nodes::run(client, out, cmd.as_ref()).await,
        Cmd::Controlplanes => cmd::controlplanes::run(client, out).await,
        Cmd::Audit(AuditCmd::Tail(a)) => cmd::audit_tail::run(client, out, a).await,
        Cmd::Export(c) => cmd::export::run(client, out, c).await,
        Cmd::Completion { shell } => cmd::docs::completion(*shell),
        Cmd::GenerateMan { dir } => cmd::docs::generate_man(out, dir),
    }
}
