//! A node daemon run without `--iface` (e.g. a node that only enforces file and exec rules,
//! like the VM tier's guest): no network backend, and every network rule is reported as
//! unenforced in the status.

use crate::enforce::{NetBackend, PolicyHook};
use crate::net::xdp::XdpError;
use palisade_policy::ir::Policy;
use palisade_policy::plan::NetPlan;
use palisade_proto::v1;

/// The network backend that enforces nothing.
pub struct NoNetwork;

impl NetBackend for NoNetwork {
    fn apply(&mut self, _plan: &NetPlan, _generation: u32) -> Result<(), XdpError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "no network backend (no --iface)".into()
    }

    fn status(&self, _rules: usize) -> v1::BackendStatus {
        v1::BackendStatus {
            name: "network".into(),
            attached: false,
            detail: self.describe(),
            ..Default::default()
        }
    }
}

/// Reports every network rule of the enforced policies as unenforced.
#[derive(Default)]
pub struct NoNetworkHook {
    unenforced: Vec<v1::Unenforced>,
}

impl PolicyHook for NoNetworkHook {
    fn apply(&mut self, policies: &[(Policy, u64)]) -> Result<(), String> {
        self.unenforced = policies
            .iter()
            .flat_map(|(p, _)| {
                p.network.rules.iter().map(|r| v1::Unenforced {
                    policy: p.name.clone(),
                    rule: r.name.clone(),
                    reason: "this node daemon runs without --iface: no network enforcement".into(),
                })
            })
            .collect();
        Ok(())
    }

    fn status(&self, status: &mut v1::NodeStatus) {
        status.unenforced.extend(self.unenforced.iter().cloned());
    }
}
