//! The LSM programs' kernel ABI: [`palisade_abi::lsm`], the one Rust definition of
//! `bpf/lib/palisade_lsm.h` (checked against the header there), and the daemon's glue:
//! C strings, device numbers, and names of operations and hooks for events.

pub use palisade_abi::lsm::*;

/// A NUL-terminated C string field as text.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The kernel's internal `dev_t` for a userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

pub fn op_name(op: u32) -> &'static str {
    match op {
        OP_READ => "read",
        OP_WRITE => "write",
        OP_EXEC => "exec",
        _ => "read+write",
    }
}

/// What a hook checked, for events: `None` for the plain file and exec hooks.
pub fn hook_detail(hook: u32) -> Option<&'static str> {
    match hook {
        HOOK_MMAP => Some("executable mapping (mmap PROT_EXEC)"),
        HOOK_MPROTECT => Some("executable mapping (mprotect PROT_EXEC)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // 8:1 (sda1) is 0x801 for userspace and 8 << 20 | 1 inside the kernel.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }
}
