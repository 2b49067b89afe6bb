//! The write-back thread: a heap of `(due, key, generation)` fed through a channel, handing
//! due items to `--transfers` uploader threads. A failed upload comes back with its next try
//! scheduled by [`super::retry`]; it never gives up. Only writes queue an item, so reads
//! never postpone an upload.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::retry::Jitter;
use super::state::{Key, Msg, Shared};

/// How soon an item whose key is busy (another upload of it in flight, or a delete under
/// way) is looked at again.
const BUSY_AGAIN: Duration = Duration::from_millis(200);
/// Longest wait between two looks at the heap.
const IDLE_TICK: Duration = Duration::from_secs(3600);
/// How long shutdown waits for uploads in flight.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

pub(super) fn spawn(sh: Arc<Shared>, rx: Receiver<Msg>) -> Vec<JoinHandle<()>> {
    let transfers = sh.opts.transfers.max(1);
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<(Key, u64)>(transfers);
    let mut handles = Vec::new();
    for i in 0..transfers {
        let (sh, jobs) = (sh.clone(), jobs_rx.clone());
        let h = std::thread::Builder::new()
            .name(format!("s3serve:upload{i}"))
            .spawn(move || {
                for (key, gen) in jobs.iter() {
                    let error = sh.upload(&key, gen).err().map(|e| e.message);
                    if error.is_none() {
                        log::info!("cache: uploaded {}/{}", key.0, key.1);
                    }
                    sh.upload_ended(&key);
                    let _ = sh.wb.send(Msg::Done { key, gen, error });
                }
            })
            .expect("spawning a thread at start-up");
        handles.push(h);
    }
    let h = std::thread::Builder::new()
        .name("s3serve:writeback".into())
        .spawn(move || run(&sh, &rx, jobs_tx, transfers))
        .expect("spawning a thread at start-up");
    handles.push(h);
    handles
}

fn run(
    sh: &Shared,
    rx: &Receiver<Msg>,
    jobs: crossbeam_channel::Sender<(Key, u64)>,
    transfers: usize,
) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Key)>> = BinaryHeap::new();
    let mut running = 0usize;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut jitter = Jitter::new(seed);
    let mut stopping: Option<crossbeam_channel::Sender<usize>> = None;
    loop {
        let now = sh.clock.now();
        while stopping.is_none() && running < transfers {
            let due = matches!(heap.peek(), Some(Reverse((at, _, _))) if *at <= now);
            if !due {
                break;
            }
            let Some(Reverse((_, gen, key))) = heap.pop() else {
                break;
            };
            match sh.claim(&key, gen) {
                None => {}
                Some(false) => heap.push(Reverse((now + BUSY_AGAIN, gen, key))),
                Some(true) => {
                    running += 1;
                    if jobs.send((key, gen)).is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(done) = &stopping {
            if running == 0 {
                let _ = done.send(sh.pending());
                return;
            }
        }
        let wait = match heap.peek() {
            Some(Reverse((at, _, _))) if running < transfers => at.saturating_duration_since(now),
            _ => IDLE_TICK,
        };
        // A clock that does not move (a test's) is looked at again soon.
        let wait = wait.max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(Msg::Queue { key, gen, due }) => heap.push(Reverse((due, gen, key))),
            Ok(Msg::Done { key, gen, error }) => {
                running = running.saturating_sub(1);
                if let Some(error) = error {
                    if let Some(next) = sh.upload_failed(&key, gen, &error, jitter.next_unit()) {
                        heap.push(Reverse((next, gen, key)));
                    }
                }
            }
            Ok(Msg::Stop(done)) => stopping = Some(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
