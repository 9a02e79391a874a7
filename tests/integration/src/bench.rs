//! What the benchmarks (`examples/`) and the simulator tests share: clocks, a process's memory and CPU, record
//! files, percentiles.

use serde_json::Value;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time, ns since the epoch (as the simulator's records carry it).
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// A process's resident memory, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Every JSON line of a record file (missing: none).
pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `p` quantile (0..=1) of sorted values; NaN for none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// From simulator record files (`palisade-noded simulate --record`): per node, the
/// revisions of `policy` it applied successfully, in order (repeats of one folded).
pub fn applied(records: &[&Path], policy: &str) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for r in records.iter().flat_map(|p| lines(p)) {
        if r["ok"] != true {
            continue;
        }
        if let Some(rev) = r["policies"][policy].as_u64() {
            let v = out
                .entry(r["node"].as_str().unwrap().to_string())
                .or_default();
            if v.last() != Some(&rev) {
                v.push(rev);
            }
        }
    }
    out
}

/// From simulator record files: per node, when (ns since the epoch) it first applied
/// revision `rev` of `policy`, added to `per_node` (earlier entries kept).
pub fn first_applied(
    records: &[&Path],
    policy: &str,
    rev: u64,
    per_node: &mut std::collections::BTreeMap<String, i128>,
) {
    for l in records.iter().flat_map(|p| lines(p)) {
        if l["ok"] == true && l["policies"][policy].as_u64() == Some(rev) {
            let n = l["node"].as_str().unwrap_or("").to_string();
            let t = l["t_unix_ns"].as_i64().unwrap_or(0) as i128;
            per_node.entry(n).or_insert(t);
        }
    }
}

/// A process's `/proc/PID/smaps_rollup` field (`Rss`, `Anonymous`, `Private_Dirty`...), KiB.
pub fn smaps_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A record file read as it grows: each [`read`](RecordTail::read) returns only the
/// JSON lines appended since the last one (a partial last line waits for its end), so a
/// benchmark polling a file of 100,000 lines does not parse it all every 100 ms.
#[derive(Debug)]
pub struct RecordTail {
    path: std::path::PathBuf,
    offset: u64,
    partial: String,
}

impl RecordTail {
    pub fn new(path: &Path) -> RecordTail {
        RecordTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    /// The whole lines appended since the last call.
    pub fn read(&mut self) -> Vec<Value> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        whole
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::RecordTail;
    use std::io::Write;

    #[test]
    fn a_tail_returns_each_whole_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let mut t = RecordTail::new(&p);
        assert!(t.read().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&p).unwrap();
        write!(f, "{{\"a\":1}}\n{{\"a\":").unwrap();
        f.flush().unwrap();
        let got = t.read();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["a"], 1);
        writeln!(f, "2}}").unwrap();
        f.flush().unwrap();
        let got = t.read();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["a"], 2);
        assert!(t.read().is_empty());
    }
}
