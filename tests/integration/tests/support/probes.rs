//! The python3 probe workload shared by the seccomp tests.

/// A python3 workload printing `NAME=ok` or `NAME=errno N` per probe.
pub const PROBES: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def probe(name, f):
    try:
        f()
        print(f"{name}=ok", flush=True)
    except OSError as e:
        print(f"{name}=errno {e.errno}", flush=True)
def raw(rc):
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
for p in sys.argv[1:]:
    if p == "mkdir": probe(p, lambda: os.rmdir(os.mkdir(os.environ["PROBE_DIR"]) or os.environ["PROBE_DIR"]))
    elif p == "inet": probe(p, lambda: socket.socket(socket.AF_INET).close())
    elif p == "inet6": probe(p, lambda: socket.socket(socket.AF_INET6).close())
    elif p == "unix": probe(p, lambda: socket.socket(socket.AF_UNIX).close())
    elif p == "getcwd": probe(p, os.getcwd)
    elif p == "unshare": probe(p, lambda: raw(libc.unshare(0x04000000)))  # CLONE_NEWUTS
    elif p == "keyctl": probe(p, lambda: raw(libc.syscall(250, 0, -3, 0)))  # KEYCTL_GET_KEYRING_ID
    elif p == "mount": probe(p, lambda: raw(libc.mount(b"none", os.environ["PROBE_DIR"].encode(), b"tmpfs", 0, None)))
    elif p == "sync": os.sync(); print("sync=ok", flush=True)
"#;
