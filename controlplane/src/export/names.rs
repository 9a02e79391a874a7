//! The export directory's file names. Shippers tail one fixed name ([`ACTIVE`]); a rotated
//! file is renamed to `audit-<UTC yyyymmddThhmmss>-<n>.jsonl`, so that sorting the names
//! sorts the files by time (`n` tells apart files rotated within the same second, and is
//! zero-padded so it sorts as a number does).

use palisade_proto::time::rfc3339;
use std::path::Path;

/// The file events are appended to.
pub const ACTIVE: &str = "audit.jsonl";
const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
/// `yyyymmddThhmmss`.
const STAMP_LEN: usize = 15;
/// Digits of `n`: a million rotations within one second before names stop sorting.
const N_WIDTH: usize = 6;

/// A rotated file: the UTC second it was rotated in and its counter within that second.
/// Ordered as its name sorts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rotated {
    stamp: String,
    n: u32,
}

/// `yyyymmddThhmmss` (UTC) of a Unix time in nanoseconds, from the RFC 3339 form the
/// events carry, so the two never disagree.
fn stamp(unix_ns: i64) -> String {
    rfc3339(unix_ns)
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

impl Rotated {
    pub fn file_name(&self) -> String {
        format!(
            "{PREFIX}{}-{:0width$}{SUFFIX}",
            self.stamp,
            self.n,
            width = N_WIDTH
        )
    }

    /// A rotated file's name read back; `None` for any other file (left alone).
    pub fn parse(name: &str) -> Option<Rotated> {
        let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (stamp, n) = rest.split_once('-')?;
        let (date, time) = stamp.split_once('T')?;
        let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(date, 8) || !digits(time, 6) || !digits(n, N_WIDTH) {
            return None;
        }
        Some(Rotated {
            stamp: stamp.to_string(),
            n: n.parse().ok()?,
        })
    }

    /// The name of a file rotated at `now_ns` after `last`: always after `last` in name
    /// order, even when the clock went back, so the oldest file is always the first name
    /// (pruning deletes it) and shippers read the files in the order they were written.
    pub fn next(last: Option<&Rotated>, now_ns: i64) -> Rotated {
        let stamp = stamp(now_ns);
        debug_assert_eq!(stamp.len(), STAMP_LEN);
        match last {
            Some(l) if l.stamp >= stamp => Rotated {
                stamp: l.stamp.clone(),
                n: l.n + 1,
            },
            _ => Rotated { stamp, n: 0 },
        }
    }
}

/// The rotated files in `dir`, oldest first.
pub fn rotated_in(dir: &Path) -> std::io::Result<Vec<Rotated>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(r) = entry?.file_name().to_str().and_then(Rotated::parse) {
            found.push(r);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_339_141_123_000_000; // 2026-11-22T09:19:01.123Z

    #[test]
    fn names_read_back_and_sort_by_time() {
        let a = Rotated::next(None, T);
        assert_eq!(a.file_name(), "audit-20261122T091901-000000.jsonl");
        assert_eq!(Rotated::parse(&a.file_name()), Some(a.clone()));
        // The same second, then a clock that went back: still later names.
        let b = Rotated::next(Some(&a), T + 500_000_000);
        let c = Rotated::next(Some(&b), T - 3_600_000_000_000);
        assert_eq!(c.file_name(), "audit-20261122T091901-000002.jsonl");
        let d = Rotated::next(Some(&c), T + 1_000_000_000);
        assert_eq!(d.file_name(), "audit-20261122T091902-000000.jsonl");
        let mut names = [d.file_name(), b.file_name(), a.file_name(), c.file_name()];
        names.sort();
        let order: Vec<_> = names.iter().filter_map(|n| Rotated::parse(n)).collect();
        assert_eq!(order, [a, b, c, d]);
    }

    #[test]
    fn other_files_are_not_rotated_ones() {
        for name in [
            ACTIVE,
            "audit-20261122T091901-0.jsonl",
            "audit-2026112T091901-000000.jsonl",
            "audit-20261122T091901-000000.jsonl.gz",
            "notes.txt",
        ] {
            assert_eq!(Rotated::parse(name), None, "{name}");
        }
    }
}
