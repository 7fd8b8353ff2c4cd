//! Slots for running jobs: at most `max` jobs run at once, the rest wait `queued`.
//! The runner takes a slot before a job runs and gives it back when the job ends; the
//! object wakes waiters when a queued job is cancelled, so it ends at once.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct Slots {
    used: Mutex<usize>,
    cv: Condvar,
    max: usize,
}

impl Slots {
    /// A pool of `max` slots (at least one).
    pub fn new(max: usize) -> Slots {
        Slots {
            used: Mutex::new(0),
            cv: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Wait for a free slot and take it: true. False (and no slot taken) as soon as
    /// `cancelled()` says so.
    pub fn acquire(&self, cancelled: impl Fn() -> bool) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if cancelled() {
                return false;
            }
            if *used < self.max {
                *used += 1;
                return true;
            }
            used = self
                .cv
                .wait_timeout(used, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Give a slot back.
    pub fn release(&self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        self.cv.notify_all();
    }

    /// Make waiters look at their `cancelled()` again now.
    pub fn wake(&self) {
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_full_pool_makes_jobs_wait_until_released_or_cancelled() {
        let s = Arc::new(Slots::new(1));
        assert!(s.acquire(|| false));
        let cancel = Arc::new(AtomicBool::new(false));
        let (s2, c2) = (s.clone(), cancel.clone());
        let waiter = std::thread::spawn(move || s2.acquire(|| c2.load(Ordering::SeqCst)));
        std::thread::sleep(Duration::from_millis(50));
        cancel.store(true, Ordering::SeqCst);
        s.wake();
        assert!(!waiter.join().unwrap(), "a cancelled waiter takes no slot");
        let s3 = s.clone();
        let waiter = std::thread::spawn(move || s3.acquire(|| false));
        std::thread::sleep(Duration::from_millis(50));
        s.release();
        assert!(waiter.join().unwrap());
    }
}
