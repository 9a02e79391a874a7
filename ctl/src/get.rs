//! `palisadectl get NAME [--revision N]`: one revision with its source.

use crate::revision_out::revision_json;
use crate::{Cli, connect, output::Format, status};
use anyhow::Result;
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::process::ExitCode;

pub async fn run(cli: &Cli, name: &str, revision: Option<u64>) -> Result<ExitCode> {
    let mut c = PoliciesClient::new(connect(cli).await?);
    let r = c
        .get(v1::GetRequest {
            name: name.to_string(),
            revision: revision.unwrap_or(0),
        })
        .await
        .map_err(status)?
        .into_inner();
    let p = r.policy.unwrap_or_default();
    match cli.output {
        Format::Json => {
            let mut v = revision_json(&p);
            v["file"] = r.file.into();
            v["source"] = r.source.into();
            v["ir"] = serde_json::from_str(&p.ir_json).unwrap_or(serde_json::Value::Null);
            println!("{v}");
        }
        Format::Text if p.deleted => println!(
            "// policy {} was deleted by revision {} ({})",
            p.name, p.revision, p.author
        ),
        Format::Text => {
            println!(
                "// policy {} revision {} from {} by {} (sha256 {})",
                p.name, p.revision, r.file, p.author, p.content_hash
            );
            print!("{}", r.source);
            if !r.source.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
