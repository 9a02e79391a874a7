//! The control planes (`controlplanes`): the store's line, then one line per replica.

use super::Render;
use palisade_proto::v1;
use serde_json::{Value, json};

impl Render for v1::ControlPlanesResponse {
    fn text(&self) -> String {
        let mut out = match (self.store.as_str(), self.store_error.is_empty()) {
            ("etcd", true) => format!(
                "store: etcd at {}, answered in {:.1} ms",
                self.endpoints,
                self.store_latency_us as f64 / 1000.0
            ),
            ("etcd", false) => format!(
                "store: etcd at {}, NOT ANSWERING: {}",
                self.endpoints, self.store_error
            ),
            (kind, true) => format!("store: {kind} (this replica alone)"),
            (kind, false) => format!("store: {kind}, FAILING: {}", self.store_error),
        };
        if self.replicas.is_empty() {
            out.push_str("\n(no replica registered)");
        }
        for r in &self.replicas {
            let mut tags = Vec::new();
            if r.driver {
                tags.push("drives rollouts");
            }
            if r.this_one {
                tags.push("answered this");
            }
            out.push_str(&format!(
                "\n{}  {}  {} node{}{}  version {}",
                r.id,
                r.url,
                r.nodes,
                if r.nodes == 1 { "" } else { "s" },
                if tags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", tags.join(", "))
                },
                r.version,
            ));
        }
        out
    }

    fn json(&self) -> Value {
        json!({
            "store": self.store,
            "endpoints": self.endpoints,
            "store_error": self.store_error,
            "store_latency_us": self.store_latency_us,
            "replicas": self.replicas.iter().map(|r| json!({
                "id": r.id,
                "url": r.url,
                "started_unix_ms": r.started_unix_ms,
                "version": r.version,
                "driver": r.driver,
                "nodes": r.nodes,
                "this_one": r.this_one,
            })).collect::<Vec<_>>(),
        })
    }
}
