//! Waiting without stalling the runtime: code that may wait on the store, or on a lock
//! that someone holds across a store call, runs through [`off_runtime`] when it is called
//! from an async task.

/// Runs `f` on this thread. On a worker of a multi-threaded runtime the worker first hands
/// its other tasks to another thread (`block_in_place`), so a slow or unreachable store
/// never stops TLS handshakes, node sessions or metrics; elsewhere (a blocking thread, a
/// current-thread test runtime, no runtime) `f` simply runs.
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::off_runtime;

    #[test]
    fn runs_outside_a_runtime() {
        assert_eq!(off_runtime(|| 7), 7);
    }

    #[tokio::test]
    async fn runs_on_a_current_thread_runtime() {
        assert_eq!(off_runtime(|| 7), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocked_caller_leaves_the_one_worker_to_other_tasks() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let (started_tx, started) = channel::<()>();
        let (tx, rx) = channel::<()>();
        // The waiter holds the runtime's only worker...
        let waiter = tokio::spawn(async move {
            started_tx.send(()).unwrap();
            off_runtime(|| rx.recv_timeout(Duration::from_secs(5)))
        });
        started.recv().unwrap();
        // ...so this task runs only if the waiter gave its worker away.
        let other = tokio::spawn(async move { tx.send(()).unwrap() });
        assert!(
            waiter.await.unwrap().is_ok(),
            "the runtime stalled while one task waited"
        );
        other.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nests() {
        assert_eq!(off_runtime(|| off_runtime(|| 3)), 3);
    }
}
