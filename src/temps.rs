//! Temporary files, wherever they are made (the tree, the upload folders, the spool): one
//! name prefix, and the rule that a temporary whose flock can be taken has no live writer,
//! in this process or in another instance sharing the filesystem, so it may be removed.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// Temporary files are hidden, and recognisable by the start-up sweeps.
pub const TEMP_PREFIX: &str = ".s3serve-tmp-";

/// Locks a temporary its writer just created. False when a sweep took it first (the sweep
/// holds its lock, or already removed it): the writer then starts over under a new name.
pub fn lock_new(file: &File) -> bool {
    flock(file, FlockOperation::NonBlockingLockExclusive).is_ok()
        && rustix::fs::fstat(file).is_ok_and(|st| st.st_nlink > 0)
}

/// Creates and locks a new temporary with `create(name)`, starting over under a new name
/// while sweeps take the ones it makes (see [`lock_new`]).
pub fn create_locked(
    mut create: impl FnMut(&str) -> std::io::Result<File>,
) -> std::io::Result<(String, File)> {
    for _ in 0..16 {
        let name = format!("{TEMP_PREFIX}{}", crate::util::unique_token());
        let file = create(&name)?;
        if lock_new(&file) {
            return Ok((name, file));
        }
    }
    Err(std::io::Error::other(
        "temporary files keep being swept away",
    ))
}

/// Removes the temporary at `path` if no writer holds its lock; true if it was removed.
pub fn remove_if_unlocked(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    std::fs::remove_file(path).is_ok()
}

/// Removes the unlocked temporaries directly in `dir`; returns how many.
pub fn sweep_dir(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && remove_if_unlocked(&e.path())
        })
        .count()
}
