//! Several control-plane replicas: `--controlplane https://a:7443,https://b:7443` names
//! them in order. The session tries them in turn: a failed connect or a dropped session
//! moves on to the next URL at once, and the backoff (0.5 s doubling to 10 s) is slept only
//! after a full pass over the list without a lasting session, so failing over to a live
//! replica costs one connect, not a backoff. With one URL a pass is one attempt: the
//! behaviour of a single control plane. A session that ends within [`LASTING`] (a replica
//! that rejects the node, or drops every session at once) counts as a failed attempt of
//! the pass, so replicas that all do that are not retried in a tight loop.

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
        }
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
    /// wait before trying it: nothing within a pass, the backoff after a full pass without
    /// a lasting session (an established one resets the backoff, as with one URL).
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
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
        let waits: Vec<_> = (0..7).map(|_| r.ended(FAILED)).collect();
        assert_eq!(
            waits,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10000),
                ms(10000)
            ]
        );
        assert_eq!(r.current(), "https://a");
        // A session that was up and dropped: back to the shortest wait.
        assert_eq!(r.ended(HELD), ms(500));
        assert_eq!(r.ended(FAILED), ms(1000));
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
        assert_eq!(r.ended(FAILED), ms(500));
        assert_eq!(r.current(), "https://a");
        // The next pass fails whole: the wait doubles once per pass, not per URL.
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.ended(FAILED), ms(1000));
        // b answers and later drops: c at once, the backoff starts over.
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.current(), "https://b");
        assert_eq!(r.ended(HELD), Duration::ZERO);
        assert_eq!(r.current(), "https://c");
        assert_eq!(r.ended(FAILED), Duration::ZERO);
        assert_eq!(r.ended(FAILED), ms(500));
        assert_eq!(r.current(), "https://b");
    }

    #[test]
    fn sessions_that_end_at_once_do_not_spin() {
        let mut r = Rotation::new(vec!["https://a".into(), "https://b".into()]);
        // Both replicas accept and drop (or reject) the node at once: each pass of two
        // attempts waits the shortest backoff, as one control plane doing that would.
        assert_eq!(r.ended(BRIEF), Duration::ZERO);
        assert_eq!(r.ended(BRIEF), ms(500));
        assert_eq!(r.ended(BRIEF), Duration::ZERO);
        assert_eq!(r.ended(BRIEF), ms(500));
        // One URL: the same as before, 0.5 s after every session.
        let mut one = Rotation::new(vec!["https://a".into()]);
        assert_eq!(one.ended(BRIEF), ms(500));
        assert_eq!(one.ended(HELD), ms(500));
    }
}
