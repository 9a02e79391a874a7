//! A node daemon run without `--iface` (e.g. a node that only enforces file and exec rules,
//! like the VM tier's guest): no network datapath, and every network rule is reported as
//! unenforced in the status.

use crate::backend::BackendError;
use crate::net::Datapath;
use palisade_policy::plan::NetPlan;
use palisade_proto::v1;

/// The network datapath that enforces nothing.
pub struct NoNetwork;

impl Datapath for NoNetwork {
    fn apply(&mut self, _plan: &NetPlan, _generation: u32) -> Result<(), BackendError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "no network backend (no --iface)".into()
    }

    fn unavailable(&self) -> Option<String> {
        Some("this node daemon runs without --iface: no network enforcement".into())
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
