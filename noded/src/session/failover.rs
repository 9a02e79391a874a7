//! Several control-plane replicas: `--controlplane https://a:7443,https://b:7443` names
//! them in order. The session tries them in turn: a failed connect or a dropped session
//! moves on to the next URL at once, and the backoff (0.5 s doubling to 10 s) is slept only
//! after a full pass over the list without a lasting session, so failing over to a live
//! replica costs one connect, not a backoff. With one URL a pass is one attempt: the
//! behaviour of a single control plane. A session that ends within [`LASTING`] (a replica
//! that rejects the node, or drops every session at once) counts as a failed attempt of
//! the pass, so replicas that all do that are not retried in a tight loop.
//!
//! Every backoff wait is jittered: a random time between half of it and all of it ("equal
//! jitter"), so a fleet whose sessions all dropped at the same moment (a control plane
//! restarted under 10,000 nodes) does not come back in lockstep, one wave of connects every
//! doubling, but spread over each wait; the expected wait still doubles and never exceeds
//! [`BACKOFF_MAX`].

use std::time::Duration;

/// The first wait after a pass without a session.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait between passes.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A session up at least this long starts a new pass when it ends.
pub const LASTING: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("--controlplane {0:?} names no URL (expected https://host:port, comma-separated)")]
    Empty(String),
    #[error("--controlplane: {url:?} is not a URL (expected https://host:port): {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
}

/// The URLs of a comma-separated `--controlplane` value, in order, each checked.
pub fn parse_urls(list: &str) -> Result<Vec<String>, FailoverError> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    if urls.is_empty() {
        return Err(FailoverError::Empty(list.to_string()));
    }
    for url in &urls {
        tonic::transport::Endpoint::from_shared(url.clone()).map_err(|source| {
            FailoverError::Url {
                url: url.clone(),
                source,
            }
        })?;
    }
    Ok(urls)
}

/// Which URL to try next and how long to wait before it.
#[derive(Debug, Clone)]
pub struct Rotation {
    urls: Vec<String>,
    at: usize,
    /// Attempts since the last lasting session (that one included).
    tried: usize,
    backoff: Duration,
    /// xorshift64* state for the jitter (never 0).
    rng: u64,
}

/// `base` jittered by `unit` (in `[0, 1)`): between half of `base` and `base`.
pub fn jittered(base: Duration, unit: f64) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    base / 2 + base.mul_f64(unit / 2.0)
}

/// A seed that differs between processes and between the rotations of one process (the
/// simulator runs thousands), from the standard library's randomly keyed hasher.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish() | 1
}

impl Rotation {
    /// A rotation starting at the first of `urls` (at least one).
    pub fn new(urls: Vec<String>) -> Rotation {
        assert!(!urls.is_empty(), "a rotation needs a URL");
        Rotation {
            urls,
            at: 0,
            tried: 0,
            backoff: BACKOFF_MIN,
            rng: seed(),
        }
    }

    /// The next number in `[0, 1)` of this rotation's jitter.
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The URL to try now.
    pub fn current(&self) -> &str {
        &self.urls[self.at]
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The attempt on [`current`](Self::current) ended; `up` is how long its session was
    /// established, `None` when there was none. Moves to the next URL and says how long to
    /// wait before trying it: nothing within a pass, the backoff (jittered: between half of
    /// it and all of it) after a full pass without a lasting session (an established one
    /// resets the backoff, as with one URL).
    pub fn ended(&mut self, up: Option<Duration>) -> Duration {
        if let Some(up) = up {
            self.backoff = BACKOFF_MIN;
            if up >= LASTING {
                self.tried = 0;
            }
        }
        self.tried += 1;
        self.at = (self.at + 1) % self.urls.len();
        if self.tried < self.urls.len() {
            return Duration::ZERO;
        }
        self.tried = 0;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        jittered(wait, self.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `wait` is the backoff `base_ms` jittered: within [base/2, base].
    #[track_caller]
    fn backoff_of(wait: Duration, base_ms: u64) {
        assert!(
            wait >= ms(base_ms) / 2 && wait <= ms(base_ms),
            "{wait:?} is not the {base_ms} ms backoff jittered"
        );
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        assert_eq!(jittered(ms(1000), 0.0), ms(500));
        assert_eq!(jittered(ms(1000), 0.5), ms(750));
        assert!(jittered(ms(1000), 0.999_999) <= ms(1000));
        // Out of range inputs are clamped, never beyond the backoff.
        assert_eq!(jittered(ms(1000), 7.0), ms(1000));
        assert_eq!(jittered(ms(1000), -1.0), ms(500));
    }

    #[test]
    fn a_fleet_dropped_at_once_does_not_come_back_in_lockstep() {
        // 10,000 rotations (a simulated fleet in one process), each session held and
        // dropped at the same moment: the first waits spread over [250 ms, 500 ms].
        let waits: Vec<Duration> = (0..10_000)
            .map(|_| Rotation::new(vec!["https://a".into()]).ended(HELD))
            .collect();
        for w in &waits {
            backoff_of(*w, 500);
        }
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(
            *lo < ms(260) && *hi > ms(490),
            "narrow spread {lo:?}..{hi:?}"
        );
        // Spread evenly: each 25 ms slice of the window gets roughly a tenth.
        let mut slices = [0usize; 10];
        for w in &waits {
            slices[((w.as_millis() as usize).saturating_sub(250) / 25).min(9)] += 1;
        }
        assert!(slices.iter().all(|n| (700..1300).contains(n)), "{slices:?}");
        // And within one rotation the waits are not one fixed sequence either.
        let mut r = Rotation::new(vec!["https://a".into()]);
        let again: BTreeSet<Duration> = (0..20).map(|_| r.ended(HELD)).collect();
        assert!(again.len() > 10, "{again:?}");
    }

    const FAILED: Option<Duration> = None;
    const HELD: Option<Duration> = Some(Duration::from_secs(30));
    const BRIEF: Option<Duration> = Some(Duration::from_millis(20));

    #[test]
    fn urls_are_split_trimmed_and_checked() {
        assert_eq!(
            parse_urls("https://a:7443").unwrap(),
            vec!["https://a:7443"]
        );
        assert_eq!(
            parse_urls(" https://a:7443 , https://b:7443,").unwrap(),
            vec!["https://a:7443", "https://b:7443"]
        );
        assert!(matches!(parse_urls(" , "), Err(FailoverError::Empty(_))));
        let e = parse_urls("https://a:7443,not a url").unwrap_err();
        assert!(e.to_string().contains("\"not a url\""), "{e}");
    }

    #[test]
    fn one_url_backs_off_as_a_single_control_plane_does() {
        let mut r = Rotation::new(vec!["https://a".into()]);
        // Connects that fail: 0.5 s, 1 s, 2 s, ... up to 10 s.
        for base in [500, 1000, 2000, 4000, 8000, 10000, 10000] {
            backoff_of(r.ended(FAILED), base);
        }
        assert_eq!(r.current(), "https://a");
        // A session that was up and dropped: back to the shortest wait.
        backoff_of(r.ended(HELD), 500);
        backoff_of(r.ended(FAILED), 1000);
    }

    #[test]
    fn a_dropped_session_fails_over_at_once_and_a_pass_backs_off() {
        let urls: Vec<String> = ["https://a", "https://b", "https://c"]
            .map(String::from)
            .into();
        let mut r = Rotation::new(urls);
        assert_eq!(r.current(), "https://a");
        // The session with a drops: b is tried at once, then c.
        assert_eq!(r.ended(HELD), Duration::ZERO);
        assert_eq!(r.current(), "https://b");
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.current(), "https://c");
        // c fails too: a full pass (a, b, c) without a session, so wait.
        backoff_of(r.ended(FAILED), 500);
        assert_eq!(r.current(), "https://a");
        // The next pass fails whole: the wait doubles once per pass, not per URL.
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        backoff_of(r.ended(FAILED), 1000);
        // b answers and later drops: c at once, the backoff starts over.
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.current(), "https://b");
        assert_eq!(r.ended(HELD), Duration::ZERO);
        assert_eq!(r.current(), "https://c");
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        backoff_of(r.ended(FAILED), 500);
        assert_eq!(r.current(), "https://b");
    }

    #[test]
    fn sessions_that_end_at_once_do_not_spin() {
        let mut r = Rotation::new(vec!["https://a".into(), "https://b".into()]);
        // Both replicas accept and drop (or reject) the node at once: each pass of two
        // attempts waits the shortest backoff, as one control plane doing that would.
        assert_eq!(r.ended(BRIEF), Duration::ZERO);
        backoff_of(r.ended(BRIEF), 500);
        assert_eq!(r.ended(BRIEF), Duration::ZERO);
        backoff_of(r.ended(BRIEF), 500);
        // One URL: the same as before, 0.5 s after every session.
        let mut one = Rotation::new(vec!["https://a".into()]);
        backoff_of(one.ended(BRIEF), 500);
        backoff_of(one.ended(HELD), 500);
    }
}
