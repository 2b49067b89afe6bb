//! Listing pages kept whole. A page is a function of the directory listings its walk read
//! and of the "holds an object" answers behind its common prefixes. While every one of
//! those stands (the same cached listing is still current, and no watch behind an answer
//! has seen a removal), the page a new walk would write is the one already written, so it is
//! answered from memory. Checking costs one `stat` per directory the page read.
//!
//! Only pages whose every input can be checked are kept: a directory found missing, a
//! subdirectory found empty, or an answer checked by stamp makes a page that is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::dircache::Listing;
use super::Vfs;
use crate::backend::WatchTicket;

/// At most this many bytes of pages are kept; past it, all are dropped.
const BYTES_MAX: usize = 8 << 20;
/// A page that read more listing entries than this is not kept: it would pin large
/// listings in memory after the directory cache has let them go.
const ENTRIES_MAX: usize = 8192;
/// At most this many listing entries are pinned by kept pages (counted once per page):
/// with the directory cache's own bound, listings take at most twice its memory.
const PINNED_MAX: usize = 1 << 17;

/// What a page was computed from.
#[derive(Default)]
pub struct Inputs {
    /// The listings read: bucket, directory, listing.
    pub listings: Vec<(String, String, Arc<Listing>)>,
    /// The watches behind each common prefix's answer.
    pub tickets: Vec<WatchTicket>,
    /// Cleared by anything that cannot be checked later.
    pub checkable: bool,
}

impl Inputs {
    pub fn new() -> Inputs {
        Inputs {
            checkable: true,
            ..Inputs::default()
        }
    }
}

struct Kept {
    body: Arc<Vec<u8>>,
    inputs: Inputs,
    /// Listing entries it pins.
    entries: usize,
}

#[derive(Default)]
pub(super) struct Pages(Mutex<Shelf>);

#[derive(Default)]
struct Shelf {
    pages: HashMap<String, Arc<Kept>>,
    bytes: usize,
    entries: usize,
}

impl Pages {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shelf> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Vfs {
    /// The page kept under `key`, if everything it was computed from still stands.
    pub fn kept_page(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        let kept = self.pages.lock().pages.get(key)?.clone();
        if !kept.inputs.tickets.is_empty() {
            // Removals completed before this call are taken in before the tickets are read.
            let w = self.backend.removals()?;
            w.catch_up();
            if !kept.inputs.tickets.iter().all(|t| w.unchanged(t)) {
                return None;
            }
        }
        for (bucket, dir, listing) in &kept.inputs.listings {
            if !Arc::ptr_eq(&self.listing(bucket, dir).ok()?, listing) {
                return None;
            }
        }
        Some(kept.body.clone())
    }

    /// Keeps a page computed from `inputs`, where they can be checked later.
    pub fn keep_page(&self, key: String, body: &Arc<Vec<u8>>, inputs: Inputs) {
        let entries: usize = inputs.listings.iter().map(|l| l.2.entries.len()).sum();
        if !inputs.checkable || !self.dirs.keeps_any() || entries > ENTRIES_MAX {
            return;
        }
        let size = body.len() + key.len();
        if size > BYTES_MAX / 8 {
            return;
        }
        let kept = Arc::new(Kept {
            body: body.clone(),
            inputs,
            entries,
        });
        let key_len = key.len();
        let mut shelf = self.pages.lock();
        if shelf.bytes + size > BYTES_MAX || shelf.entries + entries > PINNED_MAX {
            *shelf = Shelf::default();
        }
        if let Some(old) = shelf.pages.insert(key, kept) {
            shelf.bytes -= old.body.len() + key_len;
            shelf.entries -= old.entries;
        }
        shelf.bytes += size;
        shelf.entries += entries;
    }
}
