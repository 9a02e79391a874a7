//! The kernel ABI of Palisade's BPF programs on the Rust side, defined once: every constant
//! and `repr(C)` struct of the C headers under `bpf/lib/` that Rust code needs, for
//! `policy-lang` (which plans map entries and decides as the datapath does) and the node
//! daemon (which writes the maps and reads the ring buffers).
//!
//! - [`net`]: `bpf/lib/palisade_abi.h` (XDP ingress / TC egress firewall);
//! - [`lsm`]: `bpf/lib/palisade_lsm.h` (BPF-LSM file and exec programs);
//! - [`exec`]: `bpf/lib/exec_abi.h` (the exec tracker's ring-buffer record).
//!
//! The headers are the definition; one test module reads all three and checks every
//! constant here and every struct's size (and the offsets that matter) against them. Change
//! a header and its module together, and bump that ABI's version.
//!
//! Pure and `no_std`: no I/O, no dependencies. With the `aya` feature (the node daemon's),
//! the map keys and values implement `aya::Pod`; the implementation has to live here, with
//! the types, because of the orphan rule.
#![cfg_attr(not(test), no_std)]

/// `unsafe impl aya::Pod` (feature `aya`) for map keys and values. Only for `repr(C)`
/// structs of integers and integer arrays whose padding is explicit (`pad` fields): every
/// byte of a value is initialised and any bytes are a valid value.
macro_rules! pod {
    ($($t:ty),+ $(,)?) => {
        $(
            #[cfg(feature = "aya")]
            // SAFETY: see the macro; the tests pin every size to the C header's and check
            // that the fields fill the struct.
            unsafe impl aya::Pod for $t {}
        )+
    };
}

pub mod exec;
pub mod lsm;
pub mod net;

#[cfg(test)]
mod tests;

/// A ring-buffer record the kernel writes: `repr(C)`, made only of integers and integer
/// arrays, so any bytes of the right length are a valid value.
///
/// # Safety
/// Implement only for such types.
pub unsafe trait Record: Copy + Sized {
    /// Reads a record from ring-buffer bytes; `None` when they are too short.
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < core::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked and the trait's contract makes any bytes valid.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
}
