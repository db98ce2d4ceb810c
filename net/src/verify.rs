//! Cold password verifications (argon2id: tens of milliseconds of CPU each) on threads of
//! their own at a low scheduling priority (nice 10: a weight of 110 against the 1 024 of the
//! server's other threads), so that a crowd of wrong passwords takes little of the CPU that
//! the connections already served want, and a warm login or a relay is not queued behind an
//! argon2 computation; yet cold logins still progress (about a tenth of a busy core each)
//! when the server is saturated, where nice 19 (a weight of 15) would all but stop them.
//! How many run at once is bounded by [`crate::Shared::verify_slots`] (one per core by
//! default); the threads are started at the first cold verification and end with the last
//! handle on the server's shared state.

use std::sync::OnceLock;

/// One verification, boxed for the queue.
type Job = Box<dyn FnOnce() + Send>;

/// The verification threads; see the module docs.
pub(crate) struct VerifyThreads {
    threads: usize,
    queue: OnceLock<async_channel::Sender<Job>>,
}

impl std::fmt::Debug for VerifyThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyThreads")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// The nice value of the verification threads (see the module docs).
const NICE: i32 = 10;

impl VerifyThreads {
    /// Threads to start at the first verification (at least one).
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            queue: OnceLock::new(),
        }
    }

    /// Runs `f` on a verification thread and returns its result; `None` if no thread could
    /// be started or `f` panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move || {
            // The asker may have gone (its client closed): nobody to tell.
            let _ = tx.send_blocking(f());
        });
        self.queue().send(job).await.ok()?;
        rx.recv().await.ok()
    }

    fn queue(&self) -> &async_channel::Sender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = async_channel::unbounded::<Job>();
            for i in 0..self.threads {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("socks5d-verify-{i}"))
                    .spawn(move || {
                        // On Linux the nice value is per thread (`who` 0: this thread).
                        if let Err(e) = rustix::process::setpriority_process(None, NICE) {
                            tracing::warn!(error = %e, "cannot lower the priority of a password verification thread");
                        }
                        while let Ok(job) = rx.recv_blocking() {
                            // A panic drops the job's answer (`run` answers `None`) and keeps
                            // the thread.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a password verification thread");
                }
            }
            // With no thread started, every receiver is gone and `run` answers `None`.
            tx
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_low_priority_thread_of_its_own() {
        let pool = VerifyThreads::new(2);
        let (name, nice) = futures_lite::future::block_on(pool.run(|| {
            (
                std::thread::current().name().map(str::to_owned),
                rustix::process::getpriority_process(None).unwrap(),
            )
        }))
        .unwrap();
        assert!(name.unwrap().starts_with("socks5d-verify-"));
        assert_eq!(nice, NICE);
    }

    #[test]
    fn a_panic_is_none_and_the_pool_carries_on() {
        let pool = VerifyThreads::new(1);
        let r: Option<()> = futures_lite::future::block_on(pool.run(|| panic!("boom")));
        assert_eq!(r, None);
        // The only thread survived it.
        assert_eq!(futures_lite::future::block_on(pool.run(|| 1)), Some(1));
    }
}
