//! rclone's filters (`--include`, `--exclude`, `--filter`, `--files-from`, size, age and
//! metadata limits, `--exclude-if-present`, `--hash-filter`, `--max-depth`): which objects
//! are served. They are compiled once, at start-up, into a [`Filter`] that the VFS consults
//! on every path: a key it excludes is absent from listings and cannot be read, written or
//! deleted.
//!
//! Paths are matched as rclone matches them when serving the same directory: from the
//! served root, so the bucket is the first segment (`photos/2024/a.jpg`); a directory is
//! matched with a trailing `/`. Age limits are measured from start-up, as in rclone.

mod glob;
mod rules;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::backend::ObjectMeta;
pub use rules::RuleFlags;
use rules::{Lines, Rules};

/// The filter flags as given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterOptions {
    pub rules: RuleFlags,
    /// `--metadata-filter` and friends: rules over `name=value` metadata items.
    pub metadata: RuleFlags,
    pub exclude_if_present: Vec<String>,
    pub files_from: Vec<String>,
    pub files_from_raw: Vec<String>,
    pub files_from0: Vec<String>,
    pub min_age: Option<Duration>,
    pub max_age: Option<Duration>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub ignore_case: bool,
    /// `K/N` or `@/N`; empty when unset.
    pub hash_filter: String,
    pub max_depth: Option<usize>,
}

/// The compiled filter.
#[derive(Debug, Default)]
pub struct Filter {
    file_rules: Rules,
    dir_rules: Rules,
    meta_rules: Rules,
    /// `--files-from`: the only paths served, and every directory above them.
    files: Option<HashSet<String>>,
    dirs: HashSet<String>,
    /// Objects modified before this are excluded (`--max-age`).
    mtime_from: Option<SystemTime>,
    /// Objects modified after this are excluded (`--min-age`).
    mtime_to: Option<SystemTime>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    markers: Vec<String>,
    /// `--hash-filter`: serve partition K of N.
    hash: Option<(u64, u64)>,
    max_depth: Option<usize>,
    ignore_case: bool,
}

impl Filter {
    /// Compiles the options; `None` when they filter nothing.
    pub fn new(opts: &FilterOptions) -> Result<Option<Filter>, String> {
        Filter::at(opts, SystemTime::now())
    }

    /// Compiles the options with age limits measured from `now`.
    fn at(opts: &FilterOptions, now: SystemTime) -> Result<Option<Filter>, String> {
        let mut f = Filter {
            min_size: opts.min_size,
            max_size: opts.max_size,
            markers: opts.exclude_if_present.clone(),
            max_depth: opts.max_depth,
            ignore_case: opts.ignore_case,
            mtime_to: opts.min_age.and_then(|a| now.checked_sub(a)),
            mtime_from: opts.max_age.and_then(|a| now.checked_sub(a)),
            ..Filter::default()
        };
        if let (Some(to), Some(from)) = (f.mtime_to, f.mtime_from) {
            if to < from {
                return Err("--min-age can't be larger than --max-age".into());
            }
        }
        if !opts.hash_filter.is_empty() {
            f.hash = Some(parse_hash_filter(&opts.hash_filter)?);
        }
        rules::parse(&opts.rules, &mut PathRules(&mut f))?;
        rules::parse(&opts.metadata, &mut MetaRules(&mut f.meta_rules))?;
        let lists = [
            (&opts.files_from, Lines::Rules, "--files-from"),
            (&opts.files_from_raw, Lines::Raw, "--files-from-raw"),
            (&opts.files_from0, Lines::Nul, "--files-from0"),
        ];
        let alone = f.filters_nothing();
        for (paths, how, flag) in lists {
            for path in paths {
                if !alone {
                    return Err(format!(
                        "the usage of {flag} overrides all other filters, it should be used \
                         alone or with the other --files-from flags"
                    ));
                }
                let (files, dirs) = (f.files.get_or_insert_with(HashSet::new), &mut f.dirs);
                rules::for_each_line(path, how, &mut |line| {
                    add_file(files, dirs, line);
                    Ok(())
                })?;
            }
        }
        Ok((!f.filters_nothing() || f.max_depth.is_some()).then_some(f))
    }

    fn filters_nothing(&self) -> bool {
        self.files.is_none()
            && self.mtime_from.is_none()
            && self.mtime_to.is_none()
            && self.min_size.is_none()
            && self.max_size.is_none()
            && self.file_rules.is_empty()
            && self.dir_rules.is_empty()
            && self.meta_rules.is_empty()
            && self.markers.is_empty()
            && self.hash.is_none()
    }

    /// Files whose presence hides their directory (`--exclude-if-present`).
    pub fn markers(&self) -> &[String] {
        &self.markers
    }

    /// Whether deciding on an object needs its size, time or metadata, beyond its path.
    pub fn needs_info(&self) -> bool {
        self.files.is_none()
            && (self.mtime_from.is_some()
                || self.mtime_to.is_some()
                || self.min_size.is_some()
                || self.max_size.is_some()
                || !self.meta_rules.is_empty())
    }

    /// Whether deciding on an object needs its stored metadata.
    pub fn reads_metadata(&self) -> bool {
        self.files.is_none() && !self.meta_rules.is_empty()
    }

    /// Whether directory `dir` (`bucket/a/b`, no trailing `/`) is entered. Its markers are
    /// the caller's to look for.
    pub fn dir(&self, dir: &str) -> bool {
        if self.max_depth.is_some_and(|max| depth(dir) >= max) {
            return false;
        }
        self.dir_by_rules(dir)
    }

    /// A bucket is listed (as rclone lists a top directory) when the directory rules allow
    /// it, whatever the depth limit.
    pub fn bucket(&self, bucket: &str) -> bool {
        self.dir_by_rules(bucket)
    }

    fn dir_by_rules(&self, dir: &str) -> bool {
        if self.files.is_some() {
            return self.dirs.contains(dir);
        }
        if self.dir_rules.is_empty() {
            return true;
        }
        let mut slashed = String::with_capacity(dir.len() + 1);
        slashed.push_str(dir);
        slashed.push('/');
        self.dir_rules.include(&slashed)
    }

    /// Whether the object at `path` (`bucket/a/b.txt`) passes the path rules, the depth
    /// limit, `--files-from` and `--hash-filter`. Its directories are not looked at.
    pub fn path(&self, path: &str) -> bool {
        if self.max_depth.is_some_and(|max| depth(path) > max) {
            return false;
        }
        if let Some(files) = &self.files {
            return files.contains(path);
        }
        if let Some((k, n)) = self.hash {
            if hash_partition(path, n) != k {
                return false;
            }
        }
        self.file_rules.include(path)
    }

    /// Whether the object's size, time and metadata pass (see [`needs_info`](Self::needs_info)).
    pub fn info(&self, size: u64, mtime: SystemTime, meta: Option<&ObjectMeta>) -> bool {
        if self.files.is_some() {
            return true;
        }
        if self.mtime_from.is_some_and(|from| mtime < from)
            || self.mtime_to.is_some_and(|to| mtime > to)
            || self.min_size.is_some_and(|min| size < min)
            || self.max_size.is_some_and(|max| size > max)
        {
            return false;
        }
        self.meta_rules.is_empty() || self.meta_rules.include_any(&meta_items(meta, mtime))
    }

    /// Whether `key` of `bucket` passes the path rules, and every directory above it is
    /// entered. Markers are the caller's to look for.
    pub fn key(&self, bucket: &str, key: &str) -> bool {
        let mut path = String::with_capacity(bucket.len() + 1 + key.len());
        path.push_str(bucket);
        path.push('/');
        path.push_str(key);
        let dirs = key.match_indices('/').map(|(i, _)| bucket.len() + 1 + i);
        for end in std::iter::once(bucket.len()).chain(dirs) {
            if !self.dir(&path[..end]) {
                return false;
            }
        }
        self.path(&path)
    }
}

/// How many segments `path` has.
fn depth(path: &str) -> usize {
    path.bytes().filter(|&b| b == b'/').count() + 1
}

/// Adds a `--files-from` line and the directories above it.
fn add_file(files: &mut HashSet<String>, dirs: &mut HashSet<String>, line: &str) {
    let file = line.trim_matches('/');
    files.insert(file.to_string());
    let mut dir = file;
    while let Some(i) = dir.rfind('/') {
        dir = dir[..i].trim_end_matches('/');
        if dir.is_empty() || !dirs.insert(dir.to_string()) {
            break;
        }
    }
}

/// `K/N` (K taken modulo N) or `@/N` (a partition picked at random).
fn parse_hash_filter(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or("--hash-filter: no / found".to_string())?;
    let n: u64 = n
        .parse()
        .map_err(|e| format!("--hash-filter: can't parse N={n:?}: {e}"))?;
    if n == 0 {
        return Err("--hash-filter: N must be greater than 0".into());
    }
    let k = if k == "@" {
        let seed = std::collections::hash_map::RandomState::new();
        std::hash::BuildHasher::hash_one(&seed, SystemTime::now()) % n
    } else {
        k.parse::<u64>()
            .map_err(|e| format!("--hash-filter: can't parse K={k:?}: {e}"))?
            % n
    };
    Ok((k, n))
}

/// rclone's partition of a path: the MD5 of its NFC, lower-case form, read as a
/// little-endian number, modulo `n`.
fn hash_partition(path: &str, n: u64) -> u64 {
    use md5::{Digest, Md5};
    use unicode_normalization::UnicodeNormalization;
    let normal: String = path.nfc().flat_map(char::to_lowercase).collect();
    let digest = Md5::digest(normal.as_bytes());
    let first: [u8; 8] = digest[..8].try_into().expect("an MD5 has 16 bytes");
    u64::from_le_bytes(first) % n
}

/// An object's metadata as rclone's S3 backend names it: the stored headers
/// (`content-type=…`), user metadata without its prefix, and `mtime`. An object without any
/// is one item that no ordinary rule matches.
fn meta_items(meta: Option<&ObjectMeta>, mtime: SystemTime) -> Vec<String> {
    let mut items = vec![format!("mtime={}", crate::util::rfc3339_nano(mtime))];
    if let Some(m) = meta {
        for (name, value) in m.headers.iter().chain(&m.user) {
            items.push(format!("{name}={value}"));
        }
    }
    items
}

/// Path rules: a file rule, and the directory rules it implies.
struct PathRules<'a>(&'a mut Filter);

impl rules::Sink for PathRules<'_> {
    fn add(&mut self, include: bool, glob: &str) -> Result<(), String> {
        let f = &mut *self.0;
        let mut glob = glob.to_string();
        let mut dir_rule = glob.ends_with('/');
        let mut file_rule = !dir_rule;
        if dir_rule && !include {
            // Excluding a directory excludes everything in it.
            glob.push_str("**");
        }
        if glob.contains("**") {
            (dir_rule, file_rule) = (true, true);
        }
        let re = glob::compile(&glob, f.ignore_case)?;
        if file_rule {
            f.file_rules.push(include, re.clone());
            if include || glob == "*" {
                for dir_glob in glob::dir_globs(&glob) {
                    if dir_glob != "/" {
                        f.dir_rules
                            .push(include, glob::compile(&dir_glob, f.ignore_case)?);
                    }
                }
            }
        }
        if dir_rule {
            f.dir_rules.push(include, re);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.0.file_rules.clear();
        self.0.dir_rules.clear();
        self.0.meta_rules.clear();
    }
}

/// Metadata rules: matched as written (case counts), with no directory rules.
struct MetaRules<'a>(&'a mut Rules);

impl rules::Sink for MetaRules<'_> {
    fn add(&mut self, include: bool, glob: &str) -> Result<(), String> {
        self.0.push(include, glob::compile(glob, false)?);
        Ok(())
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(opts: FilterOptions) -> Filter {
        Filter::new(&opts).unwrap().expect("something is filtered")
    }

    fn rules(filter: &[&str]) -> Filter {
        crate::vfs::filter::tests::filter(FilterOptions {
            rules: RuleFlags {
                filter: filter.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn nothing_given_is_no_filter() {
        assert!(Filter::new(&FilterOptions::default()).unwrap().is_none());
    }

    #[test]
    fn includes_end_with_an_implicit_exclude_and_imply_directories() {
        let f = filter(FilterOptions {
            rules: RuleFlags {
                include: vec!["/b/photos/*.jpg".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(f.key("b", "photos/a.jpg"));
        assert!(!f.key("b", "photos/a.png"));
        assert!(!f.key("b", "photos/x/a.jpg"));
        assert!(!f.key("c", "photos/a.jpg"));
        assert!(f.dir("b/photos"));
        assert!(!f.dir("b/other"));
        assert!(!f.bucket("c"));
    }

    #[test]
    fn excluded_directories_hide_what_is_under_them() {
        let f = rules(&["- private/", "+ **"]);
        assert!(!f.key("b", "private/x"));
        assert!(!f.key("b", "a/private/x/y"));
        assert!(f.key("b", "privatex/y"));
        assert!(!f.dir("b/private"));
    }

    #[test]
    fn a_reset_forgets_earlier_rules() {
        let f = rules(&["- *.txt", "!", "- *.jpg"]);
        assert!(f.key("b", "a.txt"));
        assert!(!f.key("b", "a.jpg"));
    }

    #[test]
    fn depth_counts_the_bucket() {
        let f = filter(FilterOptions {
            max_depth: Some(2),
            ..Default::default()
        });
        assert!(f.key("b", "a"));
        assert!(!f.key("b", "d/a"));
        assert!(f.bucket("b"));
        assert!(!f.dir("b/d"));
    }

    #[test]
    fn files_from_serves_exactly_its_paths() {
        let dir = std::env::temp_dir().join(format!("s3serve-ff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list");
        std::fs::write(&list, "b/one\n/b/d/two/\n# note\n  b/e/three  \n").unwrap();
        let f = filter(FilterOptions {
            files_from: vec![list.to_str().unwrap().into()],
            ..Default::default()
        });
        assert!(f.key("b", "one") && f.key("b", "d/two") && f.key("b", "e/three"));
        assert!(!f.key("b", "d/other") && !f.key("c", "one"));
        assert!(f.dir("b/d") && !f.dir("b/x"));
        let mixed = FilterOptions {
            files_from: vec![list.to_str().unwrap().into()],
            min_size: Some(1),
            ..Default::default()
        };
        assert!(Filter::new(&mixed).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_and_age_limits() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let f = Filter::at(
            &FilterOptions {
                min_size: Some(10),
                max_size: Some(20),
                max_age: Some(day),
                ..Default::default()
            },
            now,
        )
        .unwrap()
        .unwrap();
        assert!(f.needs_info());
        assert!(f.info(10, now, None) && f.info(20, now, None));
        assert!(!f.info(9, now, None) && !f.info(21, now, None));
        assert!(!f.info(15, now - 2 * day, None));
        let bad = FilterOptions {
            min_age: Some(2 * day),
            max_age: Some(day),
            ..Default::default()
        };
        assert!(Filter::new(&bad).is_err());
    }

    #[test]
    fn metadata_rules_match_name_value_items() {
        let f = filter(FilterOptions {
            metadata: RuleFlags {
                include: vec!["content-type=image/*".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        let meta = |ct: &str| ObjectMeta {
            headers: vec![("content-type".into(), ct.into())],
            ..Default::default()
        };
        let now = SystemTime::now();
        assert!(f.info(1, now, Some(&meta("image/png"))));
        assert!(!f.info(1, now, Some(&meta("text/plain"))));
        assert!(!f.info(1, now, None));
    }

    #[test]
    fn hash_partitions_match_rclone() {
        // The differential test checks the partitions against rclone's own.
        assert_eq!(hash_partition("B/One", 7), hash_partition("b/one", 7));
        // "é" composed, and as "e" with a combining accent.
        assert_eq!(
            hash_partition("b/\u{e9}", 7),
            hash_partition("b/e\u{301}", 7)
        );
        assert!(parse_hash_filter("5/4").unwrap() == (1, 4));
        assert!(parse_hash_filter("1/0").is_err() && parse_hash_filter("x").is_err());
        assert!(parse_hash_filter("@/3").unwrap().0 < 3);
    }
}
