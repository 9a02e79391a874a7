//! Loads `bpf/exec_track.bpf.c` (`tp_btf/sched_process_exec`) and delivers every exec event
//! to a callback from a reader thread.

use crate::abi::Record;
use crate::exec_abi::ExecEvent;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};
use std::os::fd::AsRawFd;

use crate::objects::EXEC_TRACK as OBJECT;

#[derive(Debug, thiserror::Error)]
pub enum ExecTrackError {
    #[error("failed to load the exec tracker object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("exec tracker: program or map {0} missing from the object")]
    Missing(&'static str),
    #[error("exec tracker: kernel BTF unavailable (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("exec tracker: tp_btf/sched_process_exec: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("exec tracker: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("exec tracker: cannot start the reader thread: {0}")]
    Thread(std::io::Error),
}

/// The attached tracker; detached when dropped.
pub struct ExecTracker {
    ebpf: Ebpf,
}

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
        prog.load("sched_process_exec", &btf)?;
        prog.attach()?;
        let map = ebpf
            .take_map("PAL_EXEC_EVENTS")
            .ok_or(ExecTrackError::Missing("PAL_EXEC_EVENTS"))?;
        let mut ring: RingBuf<MapData> = RingBuf::try_from(map)?;
        std::thread::Builder::new()
            .name("exec-track".into())
            .spawn(move || {
                loop {
                    let mut pfd = libc::pollfd {
                        fd: ring.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd we own.
                    unsafe { libc::poll(&mut pfd, 1, 500) };
                    while let Some(item) = ring.next() {
                        if let Some(e) = ExecEvent::from_bytes(&item) {
                            on_event(e);
                        }
                    }
                }
            })
            .map_err(ExecTrackError::Thread)?;
        Ok(ExecTracker { ebpf })
    }

    /// Events the kernel could not deliver because the ring buffer was full.
    pub fn dropped(&self) -> u64 {
        self.ebpf
            .map("PAL_EXEC_DROPS")
            .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
            .and_then(|a| a.get(&0, 0).ok())
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}
