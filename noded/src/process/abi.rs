//! The exec tracker's kernel ABI: [`palisade_abi::exec`], the one Rust definition of
//! `bpf/lib/exec_abi.h` (checked against the header there), and the daemon's reading of a
//! record's strings and device number.

pub use palisade_abi::exec::*;

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// What the daemon reads from an [`ExecEvent`] beyond its integers.
pub trait ExecEventExt {
    fn comm(&self) -> String;
    fn path(&self) -> String;
    /// The device number as `stat(2)` reports it (`st_dev`).
    fn st_dev(&self) -> u64;
}

impl ExecEventExt for ExecEvent {
    fn comm(&self) -> String {
        c_str(&self.comm)
    }

    fn path(&self) -> String {
        c_str(&self.path)
    }

    fn st_dev(&self) -> u64 {
        libc::makedev(self.dev >> 20, self.dev & 0xfffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::abi::Record;
    use std::mem::size_of;

    #[test]
    fn strings_and_devices() {
        let mut b = vec![0u8; size_of::<ExecEvent>()];
        b[40..44].copy_from_slice(b"bash");
        b[56..65].copy_from_slice(b"/bin/bash");
        b[12..16].copy_from_slice(&((8u32 << 20) | 3).to_ne_bytes());
        let e = ExecEvent::from_bytes(&b).unwrap();
        assert_eq!(e.comm(), "bash");
        assert_eq!(e.path(), "/bin/bash");
        assert_eq!(e.st_dev(), libc::makedev(8, 3));
        assert!(ExecEvent::from_bytes(&b[..100]).is_none());
    }
}
