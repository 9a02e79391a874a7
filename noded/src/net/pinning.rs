//! Where the daemon pins what it attaches, and how `palisade-noded cleanup` removes it.
//!
//! Layout: `ROOT/<iface>-<ifindex>-v<ABI>/` holds every map of the network firewall
//! (pinned by name: `PAL_PFX4`, `PAL_SETS`, ...) and the two links, `link_xdp` and
//! `link_tc_egress`. `ROOT` defaults to [`DEFAULT_ROOT`]. The interface index is part of
//! the name because a re-created interface of the same name is a different device; the
//! network ABI version (`PAL_ABI_VERSION`) because a daemon must never adopt programs or
//! reuse maps of another layout: on an upgrade the old directory (`<iface>-<ifindex>` for
//! ABI 1) is removed, which detaches the old programs, and the new ones are attached.
//! bpffs refuses names with a dot, so a dot of the interface name (`eth0.100`) is written
//! as `:`, which interface names cannot contain.
//!
//! A pinned link keeps its program attached after the daemon dies; removing the pin (with
//! no process holding the link) detaches it. So removing the directory tree is the whole of
//! cleanup.

use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/palisade/v1";
pub const LINK_XDP: &str = "link_xdp";
pub const LINK_TC_EGRESS: &str = "link_tc_egress";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not on a BPF filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` or pass --bpffs-root"
    )]
    NotBpffs(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn ifindex(iface: &str) -> Result<u32, PinError> {
    let c = std::ffi::CString::new(iface).map_err(|_| PinError::NoInterface(iface.into()))?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(PinError::NoInterface(iface.into()));
    }
    Ok(idx)
}

/// The directory name of `iface` (index `idx`) for this ABI version.
fn iface_dir_name(iface: &str, idx: u32) -> String {
    format!(
        "{}-{idx}-v{}",
        iface.replace('.', ":"),
        crate::net::abi::ABI_VERSION
    )
}

/// The interface, ifindex and ABI version an interface directory's name says
/// (`eth0-2-v2`; `eth0-2` is ABI 1).
fn parse_iface_dir(name: &str) -> Option<(String, u32, u32)> {
    let (rest, version) = match name.rsplit_once("-v") {
        Some((rest, v)) if v.parse::<u32>().is_ok() && rest.contains('-') => {
            (rest, v.parse().ok()?)
        }
        _ => (name, 1),
    };
    let (iface, idx) = rest.rsplit_once('-')?;
    Some((iface.replace(':', "."), idx.parse().ok()?, version))
}

/// The pin directory of `iface` under `root`, created if missing. Directories of an
/// earlier interface with the same name (another ifindex) or of another ABI version are
/// stale and removed.
pub fn iface_dir(root: &Path, iface: &str) -> Result<PathBuf, PinError> {
    let idx = ifindex(iface)?;
    std::fs::create_dir_all(root).map_err(io(root))?;
    if !is_bpffs(root) {
        return Err(PinError::NotBpffs(root.to_path_buf()));
    }
    let mine = iface_dir_name(iface, idx);
    for e in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name != mine && parse_iface_dir(&name).is_some_and(|(i, _, _)| i == iface) {
            tracing::info!(
                dir = %e.path().display(),
                "removing pins of a former interface {iface} or of another datapath version"
            );
            remove_tree(&e.path())?;
        }
    }
    let dir = root.join(mine);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

fn is_bpffs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs into a zeroed struct with a valid path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as u64 == 0xcafe4a11
    }
}

/// Removes `path` and everything under it; returns the pins removed.
pub fn remove_tree(path: &Path) -> Result<Vec<PathBuf>, PinError> {
    let mut removed = Vec::new();
    if !path.exists() {
        return Ok(removed);
    }
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(path))?.flatten() {
            removed.extend(remove_tree(&e.path())?);
        }
        std::fs::remove_dir(path).map_err(io(path))?;
    } else {
        std::fs::remove_file(path).map_err(io(path))?;
        removed.push(path.to_path_buf());
    }
    Ok(removed)
}

/// `palisade-noded cleanup`: removes every pin under `root` (which detaches the pinned
/// links) and the directory itself, and the now-empty parents up to `/sys/fs/bpf`.
pub fn cleanup(root: &Path) -> Result<Vec<PathBuf>, PinError> {
    let removed = remove_tree(root)?;
    let mut parent = root.parent();
    while let Some(p) = parent {
        if p == Path::new("/sys/fs/bpf") || p == Path::new("/") {
            break;
        }
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::parse_iface_dir;

    #[test]
    fn interface_directories_name_interface_index_and_version() {
        let p = |n: &str| parse_iface_dir(n).map(|(i, x, v)| (i, x, v));
        assert_eq!(p("eth0-2-v2"), Some(("eth0".into(), 2, 2)));
        assert_eq!(p("eth0-2"), Some(("eth0".into(), 2, 1)));
        assert_eq!(p("eth0:100-7-v2"), Some(("eth0.100".into(), 7, 2)));
        assert_eq!(p("dev-v2-5"), Some(("dev-v2".into(), 5, 1)));
        assert_eq!(p("lsm-v1"), None);
        assert_eq!(p("notes"), None);
        let name = super::iface_dir_name("eth0.100", 7);
        assert!(!name.contains('.'), "bpffs refuses dots: {name}");
        assert_eq!(
            p(&name),
            Some(("eth0.100".into(), 7, crate::net::abi::ABI_VERSION))
        );
    }
}
