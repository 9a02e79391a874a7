//! `palisadectl nodes [list]` and `palisadectl nodes label NODE KEY=VALUE... KEY-...`.

use crate::output::{self, Format};
use crate::{Cli, connect, status};
use anyhow::{Result, bail};
use palisade_proto::v1::{self, nodes_client::NodesClient};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
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

/// Splits label arguments into labels to set and keys to remove.
pub fn parse_changes(changes: &[String]) -> Result<(Vec<(String, String)>, Vec<String>)> {
    let (mut set, mut remove) = (Vec::new(), Vec::new());
    for c in changes {
        if let Some((k, v)) = c.split_once('=') {
            if k.trim().is_empty() || v.trim().is_empty() {
                bail!("label {c:?}: KEY=VALUE with a non-empty key and value (KEY- removes)");
            }
            set.push((k.trim().to_string(), v.trim().to_string()));
        } else if let Some(k) = c.strip_suffix('-')
            && !k.trim().is_empty()
        {
            remove.push(k.trim().to_string());
        } else {
            bail!("label {c:?}: use KEY=VALUE to set or KEY- to remove");
        }
    }
    Ok((set, remove))
}

pub async fn run(cli: &Cli, cmd: Option<&NodesCmd>) -> Result<ExitCode> {
    let mut c = NodesClient::new(connect(cli).await?);
    match cmd {
        None | Some(NodesCmd::List) => {
            let list = c
                .list_nodes(v1::ListNodesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            for n in &list.nodes {
                match cli.output {
                    Format::Json => println!("{}", output::node_json(n)),
                    Format::Text => println!("{}", output::node_text(n)),
                }
            }
        }
        Some(NodesCmd::Label { node, changes }) => {
            let (set, remove) = parse_changes(changes)?;
            let n = c
                .label(v1::LabelRequest {
                    node: node.clone(),
                    set: set.into_iter().collect(),
                    remove,
                })
                .await
                .map_err(status)?
                .into_inner();
            match cli.output {
                Format::Json => println!("{}", output::node_json(&n)),
                Format::Text => println!("{}", output::node_text(&n)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes() {
        let (set, remove) =
            parse_changes(&["role=web".into(), "zone-".into(), " tier = a ".into()]).unwrap();
        assert_eq!(
            set,
            vec![("role".into(), "web".into()), ("tier".into(), "a".into())]
        );
        assert_eq!(remove, vec!["zone".to_string()]);
        assert!(parse_changes(&["oops".into()]).is_err());
        assert!(parse_changes(&["=x".into()]).is_err());
        assert!(parse_changes(&["-".into()]).is_err());
    }
}
