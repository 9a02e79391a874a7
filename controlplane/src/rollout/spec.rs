//! How a rollout proceeds: the strategy, wave sizes, the gate's limits and what happens
//! when it fails. [`Spec::from_wire`] checks the wire's `RolloutSpec` and fills in the
//! defaults; the result is persisted with the rollout.

use palisade_proto::rollout::Strategy;
use palisade_proto::v1;
use palisade_proto::wire_enum::UnknownValue;
use serde::{Deserialize, Serialize};

/// A `RolloutSpec` that cannot be carried out.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("{0}: use \"all\" or \"canary\"")]
    Strategy(#[from] UnknownValue),
    #[error("give the first wave as nodes or as a percentage, not both")]
    FirstWaveBoth,
    #[error("give the wave size as nodes or as a percentage, not both")]
    WaveSizeBoth,
    #[error("a percentage is at most 100")]
    Percentage,
    #[error("the deny-rate limit is a number of events per second, 0 or more")]
    DenyRate,
}

const DEFAULT_PAUSE_MS: u64 = 10_000;
const DEFAULT_WAVE_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_REPORT_TIMEOUT_MS: u64 = 10_000;

/// How a rollout proceeds (the wire's `RolloutSpec`, defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub canary: bool,
    pub canary_nodes: u32,
    pub canary_percent: u32,
    pub wave_nodes: u32,
    pub wave_percent: u32,
    pub pause_ms: u64,
    pub manual: bool,
    pub max_deny_rate: f64,
    pub wave_timeout_ms: u64,
    pub report_timeout_ms: u64,
    pub no_rollback: bool,
}

impl Spec {
    /// Strategy `all`: one wave, no gate.
    pub fn all() -> Spec {
        Spec {
            canary: false,
            canary_nodes: 0,
            canary_percent: 100,
            wave_nodes: 0,
            wave_percent: 100,
            pause_ms: 0,
            manual: false,
            max_deny_rate: 0.0,
            wave_timeout_ms: DEFAULT_WAVE_TIMEOUT_MS,
            report_timeout_ms: DEFAULT_REPORT_TIMEOUT_MS,
            no_rollback: true,
        }
    }

    /// The wire's spec (absent: strategy `all`), checked, with defaults filled in.
    pub fn from_wire(w: Option<&v1::RolloutSpec>) -> Result<Spec, SpecError> {
        let Some(w) = w else { return Ok(Spec::all()) };
        let strategy = match w.strategy.as_str() {
            "" => Strategy::All,
            s => s.parse()?,
        };
        if strategy == Strategy::All {
            return Ok(Spec::all());
        }
        if w.canary_nodes > 0 && w.canary_percent > 0 {
            return Err(SpecError::FirstWaveBoth);
        }
        if w.wave_nodes > 0 && w.wave_percent > 0 {
            return Err(SpecError::WaveSizeBoth);
        }
        if w.canary_percent > 100 || w.wave_percent > 100 {
            return Err(SpecError::Percentage);
        }
        if w.max_deny_rate < 0.0 || !w.max_deny_rate.is_finite() {
            return Err(SpecError::DenyRate);
        }
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        Ok(Spec {
            canary: true,
            canary_nodes: if w.canary_nodes == 0 && w.canary_percent == 0 {
                1
            } else {
                w.canary_nodes
            },
            canary_percent: w.canary_percent,
            wave_nodes: w.wave_nodes,
            wave_percent: if w.wave_nodes == 0 && w.wave_percent == 0 {
                25
            } else {
                w.wave_percent
            },
            pause_ms: or(w.pause_ms, DEFAULT_PAUSE_MS),
            manual: w.manual,
            max_deny_rate: w.max_deny_rate,
            wave_timeout_ms: or(w.wave_timeout_ms, DEFAULT_WAVE_TIMEOUT_MS),
            report_timeout_ms: or(w.report_timeout_ms, DEFAULT_REPORT_TIMEOUT_MS),
            no_rollback: w.no_rollback,
        })
    }

    pub fn strategy(&self) -> Strategy {
        if self.canary {
            Strategy::Canary
        } else {
            Strategy::All
        }
    }

    pub fn to_wire(&self) -> v1::RolloutSpec {
        v1::RolloutSpec {
            strategy: self.strategy().as_str().into(),
            canary_nodes: self.canary_nodes,
            canary_percent: self.canary_percent,
            wave_nodes: self.wave_nodes,
            wave_percent: self.wave_percent,
            pause_ms: self.pause_ms,
            manual: self.manual,
            max_deny_rate: self.max_deny_rate,
            wave_timeout_ms: self.wave_timeout_ms,
            report_timeout_ms: self.report_timeout_ms,
            no_rollback: self.no_rollback,
        }
    }

    /// The wave sizes for `total` nodes.
    pub fn waves(&self, total: usize) -> Vec<usize> {
        if total == 0 {
            return Vec::new();
        }
        if !self.canary {
            return vec![total];
        }
        let size = |nodes: u32, percent: u32| -> usize {
            if nodes > 0 {
                nodes as usize
            } else {
                (total * percent as usize).div_ceil(100).max(1)
            }
        };
        let first = size(self.canary_nodes, self.canary_percent).min(total);
        let step = size(self.wave_nodes, self.wave_percent);
        let mut out = vec![first];
        let mut left = total - first;
        while left > 0 {
            let n = step.min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}
