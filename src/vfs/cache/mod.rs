//! The file cache (`--vfs-cache-mode`): its schedules first. The write-back and eviction
//! threads decide from a clock they are given, so their rules are tested without sleeping.

pub mod clock;
pub mod evict;
pub mod retry;
