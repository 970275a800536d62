//! Requests that wait (on the origin, on a download) and how the kernel
//! stops them.
//!
//! When a process waiting on a FUSE request gets a signal (Ctrl-C, SIGTERM,
//! SIGKILL), the kernel sends `FUSE_INTERRUPT` naming the request. A waiting
//! request registers here; an interrupt wakes it, and it answers EINTR at
//! once, whatever the origin does. The work it waited on is dropped: a
//! download goes on only while another reader wants it.
//!
//! With several dispatch threads an interrupt can arrive before its request
//! is registered. It is then kept for a few seconds (in bounded memory), and
//! the request starts out interrupted. An interrupt for a request that was
//! answered already is simply forgotten.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long an interrupt that came before its request is kept.
const EARLY_KEPT: Duration = Duration::from_secs(5);
/// Early interrupts kept at most.
const EARLY_CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Interrupts {
    inner: parking_lot::Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<u64, watch::Sender<bool>>,
    early: HashMap<u64, Instant>,
}

/// A registered request; dropping it unregisters.
pub struct Waiting {
    interrupts: Arc<Interrupts>,
    unique: u64,
    interrupted: watch::Receiver<bool>,
}

impl Interrupts {
    /// Registers the request `unique`, which is about to wait.
    pub fn register(self: &Arc<Self>, unique: u64) -> Waiting {
        let mut inner = self.inner.lock();
        let already = inner.early.remove(&unique).is_some();
        let (sender, receiver) = watch::channel(already);
        inner.waiting.insert(unique, sender);
        Waiting {
            interrupts: Arc::clone(self),
            unique,
            interrupted: receiver,
        }
    }

    /// The kernel interrupts the request `unique`.
    pub fn interrupt(&self, unique: u64) {
        let mut inner = self.inner.lock();
        if let Some(waiting) = inner.waiting.get(&unique) {
            waiting.send_replace(true);
            return;
        }
        let now = Instant::now();
        if inner.early.len() >= EARLY_CAPACITY {
            inner
                .early
                .retain(|_, at| now.duration_since(*at) < EARLY_KEPT);
        }
        if inner.early.len() < EARLY_CAPACITY {
            inner.early.insert(unique, now);
        }
    }
}

impl Waiting {
    /// Returns once the request is interrupted.
    pub async fn interrupted(&mut self) {
        if self
            .interrupted
            .wait_for(|interrupted| *interrupted)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.interrupts.inner.lock().waiting.remove(&self.unique);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupt_wakes_its_request_only() {
        let interrupts = Arc::new(Interrupts::default());
        let mut first = interrupts.register(1);
        let mut second = interrupts.register(2);
        interrupts.interrupt(1);
        tokio::time::timeout(Duration::from_secs(1), first.interrupted())
            .await
            .expect("the interrupted request was not woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.interrupted())
                .await
                .is_err(),
            "another request was woken"
        );
    }

    #[tokio::test]
    async fn an_interrupt_before_its_request_is_not_lost() {
        let interrupts = Arc::new(Interrupts::default());
        interrupts.interrupt(7);
        let mut late = interrupts.register(7);
        tokio::time::timeout(Duration::from_secs(1), late.interrupted())
            .await
            .expect("an early interrupt was lost");
    }

    #[test]
    fn answered_requests_and_stray_interrupts_leave_nothing_unbounded() {
        let interrupts = Arc::new(Interrupts::default());
        drop(interrupts.register(1));
        assert!(interrupts.inner.lock().waiting.is_empty());
        for unique in 0..10 * EARLY_CAPACITY as u64 {
            interrupts.interrupt(unique);
        }
        assert!(interrupts.inner.lock().early.len() <= EARLY_CAPACITY);
    }
}
