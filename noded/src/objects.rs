//! The BPF objects the daemon embeds, named in this one place: one per `bpf/*.bpf.c`,
//! built by `build.rs` into `OUT_DIR`. Benchmark-only programs (`bpf/bench/*.bpf.c`, built
//! into `OUT_DIR/bench/`) are not embedded here: only the examples that need them include
//! them (`examples/net_bench.rs`, `examples/lsm_bench.rs`). [`program_error`]: how a
//! program that does not load or attach is described; [`load_retrying`]: every program
//! load, retried when a signal interrupted the verifier.

macro_rules! object {
    ($file:literal) => {
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

/// `bpf/xdp_firewall.bpf.c`: XDP ingress and TC egress.
pub static XDP_FIREWALL: &[u8] = object!("xdp_firewall.bpf.o");
/// `bpf/lsm_files.bpf.c`: the BPF-LSM file and exec programs.
pub static LSM_FILES: &[u8] = object!("lsm_files.bpf.o");
/// `bpf/exec_track.bpf.c`: exec tracking (`tp_btf/sched_process_exec`).
pub static EXEC_TRACK: &[u8] = object!("exec_track.bpf.o");
/// `bpf/probes.bpf.c`: the feature probes.
pub static PROBES: &[u8] = object!("probes.bpf.o");

/// Every embedded object with the source file it is built from (under `bpf/`).
pub const ALL: &[(&str, &[u8])] = &[
    ("xdp_firewall.bpf.c", XDP_FIREWALL),
    ("lsm_files.bpf.c", LSM_FILES),
    ("exec_track.bpf.c", EXEC_TRACK),
    ("probes.bpf.c", PROBES),
];

/// A program error's text, without aya's "Verifier output: " when the kernel refused the
/// program before verifying it (an empty log: e.g. EPERM where BPF LSM is not enabled).
pub fn program_error(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } if verifier_log.to_string().trim().is_empty() => {
            format!("the BPF_PROG_LOAD syscall returned {io_error}")
        }
        other => other.to_string(),
    }
}

/// How many times a load the verifier gave up on with EAGAIN is tried.
pub const LOAD_ATTEMPTS: usize = 6;

/// Runs `load` (one program's `load()`) again when it fails with EAGAIN: the verifier
/// returns that when a signal arrives while it works (a child exiting, a timer), which
/// says nothing about the program. A long program verified with a log on a busy machine
/// meets one now and then; libbpf retries the same way. Any other error, or EAGAIN
/// [`LOAD_ATTEMPTS`] times running, is returned as it is.
pub fn load_retrying(
    mut load: impl FnMut() -> Result<(), aya::programs::ProgramError>,
) -> Result<(), aya::programs::ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 * attempt as u64));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_without_a_verifier_log_do_not_print_one() {
        use aya::programs::ProgramError;
        let refused = ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        assert!(refused.to_string().contains("Verifier output:"));
        assert_eq!(
            program_error(&refused),
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)"
        );
        let verified = ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new("R1 invalid mem access".into()),
        };
        assert_eq!(program_error(&verified), verified.to_string());
        assert!(program_error(&verified).contains("Verifier output: R1 invalid mem access"));
        assert_eq!(
            program_error(&ProgramError::NotAttached),
            "the program is not attached"
        );
    }

    #[test]
    fn interrupted_loads_are_retried_and_other_errors_are_not() {
        use aya::programs::ProgramError;
        let failing = |errno| ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        };
        let mut calls = 0;
        let r = load_retrying(|| {
            calls += 1;
            if calls < 3 {
                Err(failing(libc::EAGAIN))
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r = load_retrying(|| {
            calls += 1;
            Err(failing(libc::EACCES))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1, "a refusal is not retried");

        let mut calls = 0;
        let r = load_retrying(|| {
            calls += 1;
            Err(failing(libc::EAGAIN))
        });
        assert!(
            matches!(r, Err(ProgramError::LoadError { ref io_error, .. }) if io_error.raw_os_error() == Some(libc::EAGAIN))
        );
        assert_eq!(calls, LOAD_ATTEMPTS, "EAGAIN every time ends");
    }

    fn sources(dir: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".bpf.c"))
            .collect();
        v.sort();
        v
    }

    /// Every production program is embedded, and nothing else (benchmark programs live in
    /// `bpf/bench/`, outside this list).
    #[test]
    fn embedded_objects_are_the_production_programs() {
        let mut embedded: Vec<String> = ALL.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, sources("../bpf"));
        for b in sources("../bpf/bench") {
            assert!(!embedded.contains(&b), "benchmark program {b} is embedded");
        }
        for (name, obj) in ALL {
            assert!(obj.starts_with(b"\x7fELF"), "{name} is not an ELF object");
        }
    }
}
