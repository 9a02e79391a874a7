//! Process limits the daemons raise at start.

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit the process started with.
    pub was: u64,
    /// The soft limit in force now.
    pub now: u64,
    /// The hard limit (the most an unprivileged process may raise the soft one to).
    pub hard: u64,
}

impl NoFile {
    /// Whether `connections` connections (one file each) fit, with `spare` files for
    /// everything else the process opens.
    pub fn fits(&self, connections: usize, spare: usize) -> bool {
        self.now >= (connections + spare) as u64
    }
}

fn get() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim
}

/// Raises the soft open-file limit to the hard one (a control plane holds one connection
/// per node, so 10,000 nodes need more than the usual soft limit of 1,024; the fleet
/// simulation one per simulated node) and says what it was and is.
pub fn raise_nofile() -> NoFile {
    let mut lim = get();
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct passed to it.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    let lim = get();
    NoFile {
        was,
        now: lim.rlim_cur,
        hard: lim.rlim_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_soft_limit_is_raised_to_the_hard_one() {
        let start = get();
        // Lower the soft limit (never the hard one: that could not be undone) and raise.
        let low = start.rlim_max.min(256);
        let lowered = libc::rlimit {
            rlim_cur: low,
            rlim_max: start.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed to it.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let got = raise_nofile();
        assert_eq!(got.was, low);
        assert_eq!(got.now, start.rlim_max);
        assert_eq!(got.hard, start.rlim_max);
        assert_eq!(
            get().rlim_cur,
            start.rlim_max,
            "the process's own limit moved"
        );
        // Already at the hard limit: nothing changes.
        let again = raise_nofile();
        assert_eq!((again.was, again.now), (start.rlim_max, start.rlim_max));
    }

    #[test]
    fn fits_counts_the_spare_files() {
        let l = NoFile {
            was: 1024,
            now: 10_100,
            hard: 10_100,
        };
        assert!(l.fits(10_000, 100));
        assert!(!l.fits(10_000, 101));
    }
}
