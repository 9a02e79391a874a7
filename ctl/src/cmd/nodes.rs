//! `palisadectl nodes [list]` and `palisadectl nodes label NODE KEY=VALUE... KEY-...`.

use crate::args::NodesCmd;
use crate::client::{Client, answer};
use crate::print::Printer;
use anyhow::{Result, bail};
use palisade_proto::v1;
use std::process::ExitCode;

/// Labels to set (key, value) and label keys to remove.
type LabelChanges = (Vec<(String, String)>, Vec<String>);

/// Splits label arguments into labels to set and keys to remove.
pub fn parse_changes(changes: &[String]) -> Result<LabelChanges> {
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

pub async fn run(client: &Client<'_>, out: Printer, cmd: Option<&NodesCmd>) -> Result<ExitCode> {
    let mut c = client.nodes().await?;
    match cmd {
        None | Some(NodesCmd::List) => {
            for n in &answer(c.list_nodes(v1::ListNodesRequest {}).await)?.nodes {
                out.item(n);
            }
        }
        Some(NodesCmd::Label { node, changes }) => {
            let (set, remove) = parse_changes(changes)?;
            let req = v1::LabelRequest {
                node: node.clone(),
                set: set.into_iter().collect(),
                remove,
            };
            out.item(&answer(c.label(req).await)?);
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
