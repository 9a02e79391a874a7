//! Apply latency over the most recent applies, recorded by the `Policies` service and read
//! by the metrics endpoint as a summary.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Apply latencies kept for the quantiles.
const WINDOW: usize = 4096;

#[derive(Debug, Default)]
pub struct ApplyLatency {
    recent: Mutex<VecDeque<f64>>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl ApplyLatency {
    pub fn observe(&self, d: Duration) {
        let mut w = self.recent.lock().expect("latency lock");
        if w.len() == WINDOW {
            w.pop_front();
        }
        w.push_back(d.as_secs_f64());
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The recent latencies in seconds, sorted, and the sum of every latency observed.
    pub fn sorted_and_sum(&self) -> (Vec<f64>, f64) {
        let mut lat: Vec<f64> = self
            .recent
            .lock()
            .expect("latency lock")
            .iter()
            .copied()
            .collect();
        lat.sort_by(f64::total_cmp);
        (lat, self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}
