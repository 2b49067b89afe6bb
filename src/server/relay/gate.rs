//! The hand-off gate: one new connection at a time into tiny_http.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Serialises connections into tiny_http. Its pool hands a new connection to an idle thread
/// by notifying a condition variable; two connections accepted before the woken thread runs
/// leave the second queued until some other connection closes, however many threads are
/// idle. With one hand-off at a time, from connect until tiny_http has produced the first
/// request, that cannot happen.
#[derive(Default)]
pub struct Gate {
    holder: Mutex<Option<u64>>,
    freed: Condvar,
}

/// Longest wait for a hand-off before the gate is taken anyway: a liveness guard for a
/// request that waits in tiny_http's queue while every worker is busy (the gate opens when a
/// worker takes it), or a connection tiny_http refused without producing a request.
const GATE_WAIT: Duration = Duration::from_millis(100);

impl Gate {
    pub(super) fn acquire(&self, id: u64) {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + GATE_WAIT;
        while holder.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            holder = self
                .freed
                .wait_timeout(holder, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *holder = Some(id);
    }

    /// Called when connection `id` has produced its first request (or has failed).
    pub fn release(&self, id: u64) {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        if *holder == Some(id) {
            *holder = None;
            self.freed.notify_one();
        }
    }
}
