//! Rollouts: the spec in words, waves with progress bars, nodes that need attention
//! (`rollout status`, `apply -w`), one line per rollout (`rollout list`), and the view
//! that `-w` redraws.

use super::{Format, Printer, Render};
use palisade_proto::rollout::{NodeRolloutState, Strategy};
use palisade_proto::v1;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::IsTerminal;

fn ms(v: u64) -> String {
    if v.is_multiple_of(60_000) && v >= 60_000 {
        format!("{}m", v / 60_000)
    } else if v.is_multiple_of(1000) {
        format!("{}s", v / 1000)
    } else {
        format!("{v}ms")
    }
}

pub fn spec_text(s: &v1::RolloutSpec) -> String {
    if s.strategy.parse() != Ok(Strategy::Canary) {
        return "all at once, no gate".into();
    }
    let size = |n: u32, p: u32| {
        if n > 0 {
            format!("{n} node{}", if n == 1 { "" } else { "s" })
        } else {
            format!("{p}%")
        }
    };
    let mut gate = vec![
        "apply errors".to_string(),
        format!("silence > {}", ms(s.report_timeout_ms)),
        format!("not realized in {}", ms(s.wave_timeout_ms)),
    ];
    if s.max_deny_rate > 0.0 {
        gate.push(format!("deny rate > {}/s", s.max_deny_rate));
    }
    format!(
        "canary: first wave {}, then waves of {}, each watched {}{}; gate fails on {}; {}",
        size(s.canary_nodes, s.canary_percent),
        size(s.wave_nodes, s.wave_percent),
        ms(s.pause_ms),
        if s.manual {
            ", then waits for `rollout resume`"
        } else {
            ""
        },
        gate.join(", "),
        if s.no_rollback {
            "halt without rollback"
        } else {
            "rollback on failure"
        }
    )
}

fn bar(done: u32, failed: u32, total: u32) -> String {
    const W: u32 = 20;
    if total == 0 {
        return format!("[{}]", "-".repeat(W as usize));
    }
    let d = (done * W).div_ceil(total).min(W);
    let f = ((failed * W).div_ceil(total)).min(W - d);
    format!(
        "[{}{}{}]",
        "#".repeat(d as usize),
        "!".repeat(f as usize),
        "-".repeat((W - d - f) as usize)
    )
}

fn rollout_json(r: &v1::RolloutInfo) -> Value {
    json!({
        "id": r.id,
        "policy": r.policy,
        "from_revision": r.from_revision,
        "to_revision": r.to_revision,
        "strategy": r.spec.as_ref().map(|s| s.strategy.clone()).unwrap_or_default(),
        "state": r.state,
        "reason": r.reason,
        "current_wave": r.current_wave,
        "started_unix_ms": r.started_unix_ms,
        "updated_unix_ms": r.updated_unix_ms,
        "waves": r.waves.iter().map(|w| json!({"index": w.index, "state": w.state, "nodes": w.nodes, "realized": w.realized, "failed": w.failed, "started_unix_ms": w.started_unix_ms})).collect::<Vec<_>>(),
        "nodes": r.nodes.iter().map(|n| json!({"name": n.name, "wave": n.wave, "state": n.state, "realized_revision": n.realized_revision, "detail": n.detail})).collect::<Vec<_>>(),
    })
}

/// One rollout in full: spec, state, waves with bars, node counts, and the nodes (all of
/// them with `all_nodes` or up to 20, else those that need attention).
pub struct Status<'a> {
    pub info: &'a v1::RolloutInfo,
    pub all_nodes: bool,
}

impl Render for Status<'_> {
    fn text(&self) -> String {
        let r = self.info;
        let mut out = format!(
            "rollout {} of policy {}: revision {} -> {} ({})\nstate: {}{}\n",
            r.id,
            r.policy,
            if r.from_revision == 0 {
                "none".to_string()
            } else {
                r.from_revision.to_string()
            },
            r.to_revision,
            r.spec.as_ref().map(spec_text).unwrap_or_default(),
            r.state,
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(" — {}", r.reason)
            }
        );
        for w in &r.waves {
            out.push_str(&format!(
                "  wave {:<3} {:<9} {} {}/{} realized{}\n",
                w.index + 1,
                w.state,
                bar(w.realized, w.failed, w.nodes),
                w.realized,
                w.nodes,
                if w.failed > 0 {
                    format!(", {} failed", w.failed)
                } else {
                    String::new()
                }
            ));
        }
        if r.waves.is_empty() {
            out.push_str("  no connected node is selected by either revision\n");
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &r.nodes {
            *counts.entry(n.state.as_str()).or_default() += 1;
        }
        if !r.nodes.is_empty() {
            let c: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            out.push_str(&format!("nodes ({}): {}\n", r.nodes.len(), c.join(", ")));
        }
        let show_all = self.all_nodes || r.nodes.len() <= 20;
        let mut hidden = 0;
        for n in &r.nodes {
            let attention = n.state.parse().is_ok_and(NodeRolloutState::needs_attention);
            if !show_all && !attention {
                hidden += 1;
                continue;
            }
            out.push_str(&format!(
                "  {:<20} wave {:<3} {:<13} realized rev {}{}\n",
                n.name,
                n.wave + 1,
                n.state,
                n.realized_revision,
                if n.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", n.detail)
                }
            ));
        }
        if hidden > 0 {
            out.push_str(&format!(
                "  ({hidden} more nodes pending or settled; --all-nodes lists them)\n"
            ));
        }
        out.pop();
        out
    }

    fn json(&self) -> Value {
        rollout_json(self.info)
    }
}

/// One rollout as `rollout list` shows it.
pub struct Row<'a>(pub &'a v1::RolloutInfo);

impl Render for Row<'_> {
    fn text(&self) -> String {
        let r = self.0;
        let realized: u32 = r.waves.iter().map(|w| w.realized).sum();
        let total: u32 = r.waves.iter().map(|w| w.nodes).sum();
        format!(
            "{:<24} rollout {:<5} rev {} -> {:<5} {:<12} wave {}/{}  {realized}/{total} realized{}",
            r.policy,
            r.id,
            r.from_revision,
            r.to_revision,
            r.state,
            (r.current_wave as usize + 1).min(r.waves.len()),
            r.waves.len(),
            if r.reason.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.reason)
            }
        )
    }

    fn json(&self) -> Value {
        rollout_json(self.0)
    }
}

/// What `-w` shows: on a terminal the view is redrawn in place; else (and with JSON) a new
/// view is printed whenever it changes.
pub struct Watch {
    out: Printer,
    tty: bool,
    last: String,
}

impl Watch {
    pub fn new(out: Printer) -> Watch {
        let tty = out.format == Format::Text && std::io::stdout().is_terminal();
        Watch {
            out,
            tty,
            last: String::new(),
        }
    }

    /// Shows `view` unless it is what is shown already.
    pub fn show(&mut self, view: &Status<'_>) {
        let view = self.out.render(view) + "\n";
        if view == self.last {
            return;
        }
        if self.tty {
            super::out(format_args!("\x1b[H\x1b[2J"));
        }
        super::out(format_args!("{view}"));
        if !self.tty && self.out.format == Format::Text {
            super::out(format_args!("\n"));
        }
        self.last = view;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars() {
        assert_eq!(bar(0, 0, 4), "[--------------------]");
        assert_eq!(bar(4, 0, 4), "[####################]");
        assert_eq!(bar(2, 1, 4), "[##########!!!!!-----]");
        assert_eq!(bar(0, 0, 0), "[--------------------]");
    }
}
