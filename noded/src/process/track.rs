//! Loads `bpf/exec_track.bpf.c` (`tp_btf/sched_process_exec`) and delivers every exec event
//! to a callback from a reader thread.
//!
//! There is no event budget (the process table needs every exec); events the ring buffer
//! had no room for are counted by the program (`PAL_EXEC_DROPS`). The reader thread reads
//! that counter about once a second, logs a warning when it grew and keeps the total for
//! [`ExecTracker::dropped`] and the `palisade_node_exec_events_lost_total` metric.

use crate::process::abi::ExecEvent;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::objects::EXEC_TRACK as OBJECT;

#[derive(Debug, thiserror::Error)]
pub enum ExecTrackError {
    #[error("failed to load the exec tracker object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("exec tracker: program or map {0} missing from the object")]
    Missing(&'static str),
    #[error("exec tracker: kernel BTF unavailable (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("exec tracker: tp_btf/sched_process_exec: {}", crate::objects::program_error(.0))]
    Program(#[from] aya::programs::ProgramError),
    #[error("exec tracker: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("exec tracker: cannot start the reader thread: {0}")]
    Thread(std::io::Error),
}

/// The attached tracker; detached when dropped.
pub struct ExecTracker {
    _ebpf: Ebpf,
    lost: Arc<AtomicU64>,
}

/// How often the reader thread reads the loss counter.
const LOSS_CHECK_EVERY: Duration = Duration::from_secs(1);

impl ExecTracker {
    /// Attaches the program and starts a thread calling `on_event` for every exec.
    pub fn start(
        mut on_event: impl FnMut(ExecEvent) + Send + 'static,
    ) -> Result<Self, ExecTrackError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let btf = Btf::from_sys_fs()?;
        let prog: &mut BtfTracePoint = ebpf
            .program_mut("palisade_exec")
            .ok_or(ExecTrackError::Missing("palisade_exec"))?
            .try_into()?;
        crate::objects::load_retrying(|| prog.load("sched_process_exec", &btf))?;
        prog.attach()?;
        let map = ebpf
            .take_map("PAL_EXEC_EVENTS")
            .ok_or(ExecTrackError::Missing("PAL_EXEC_EVENTS"))?;
        let ring: RingBuf<MapData> = RingBuf::try_from(map)?;
        let drops: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
            ebpf.take_map("PAL_EXEC_DROPS")
                .ok_or(ExecTrackError::Missing("PAL_EXEC_DROPS"))?,
        )?;
        let lost = Arc::new(AtomicU64::new(0));
        let total = lost.clone();
        let mut checked = Instant::now();
        crate::ringbuf::spawn_reader(
            "exec-track",
            ring,
            move |e: ExecEvent| on_event(e),
            move || {
                if checked.elapsed() >= LOSS_CHECK_EVERY {
                    checked = Instant::now();
                    note_losses(&drops, &total);
                }
            },
        )
        .map_err(ExecTrackError::Thread)?;
        Ok(ExecTracker { _ebpf: ebpf, lost })
    }

    /// Events the kernel could not deliver because the ring buffer was full (as of the
    /// reader's last look, at most about a second ago).
    pub fn dropped(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The counter behind [`ExecTracker::dropped`], for the metrics.
    pub fn lost_counter(&self) -> Arc<AtomicU64> {
        self.lost.clone()
    }
}

/// Reads the program's loss counter (summed over CPUs) into `total`; warns when it grew.
fn note_losses(drops: &PerCpuArray<MapData, u64>, total: &AtomicU64) {
    let Ok(now) = drops.get(&0, 0).map(|v| v.iter().sum::<u64>()) else {
        return;
    };
    let before = total.swap(now, Ordering::Relaxed);
    if now > before {
        tracing::warn!(
            lost = now - before,
            total = now,
            "exec tracking: the ring buffer was full and exec events were lost; the process table misses those processes until they exec again"
        );
    }
}
