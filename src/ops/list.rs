//! ListObjects (v1) and ListObjectsV2. Keys come from a depth-first walk that visits each
//! directory's entries in S3 byte order (a directory sorts as `name/`), starts at the
//! deepest directory the prefix names, skips whole subtrees that lie before the marker, and
//! stops one item past the page, so a page costs in proportion to the page, not the bucket.
//! With the `/` delimiter, subdirectories become CommonPrefixes without being walked.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html>

use crate::ops::bucket::owner;
use crate::ops::headers::quote;
use crate::ops::xml::XmlWriter;
use crate::ops::{Body, Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::dircache::{Brief, Listing};
use crate::vfs::pages::Inputs;
use crate::vfs::{key, ErrorKind};
use crate::vfs::{PrefixProbe, Vfs};
use std::borrow::Cow;
use std::sync::Arc;

/// S3 returns at most this many keys per page, whatever max-keys asks.
pub const MAX_KEYS: usize = 1000;

enum Item {
    /// A key, and the listing entry it came from.
    Key(String, Entry),
    Prefix(String),
}

/// An entry of a directory listing.
struct Entry(Arc<Listing>, usize);

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::Key(k, _) | Item::Prefix(k) => k,
        }
    }
}

/// One page request.
struct Walk<'a> {
    vfs: &'a Vfs,
    probe: PrefixProbe<'a>,
    bucket: &'a str,
    prefix: &'a str,
    delimiter: Option<&'a str>,
    /// Return only names after this one.
    after: Option<&'a str>,
    /// When `after` was a common prefix, everything under it was already returned.
    skip_under_after: bool,
    max: usize,
    items: Vec<Item>,
    truncated: bool,
    /// What the page is computed from, so that it can be kept.
    inputs: Inputs,
}

impl Walk<'_> {
    fn run(&mut self) -> Result<(), S3Error> {
        let dir = match self.prefix.rfind('/') {
            Some(i) => &self.prefix[..=i],
            None => "",
        };
        if !dir.is_empty() && key::check(dir.trim_end_matches('/')).is_err() {
            self.inputs.checkable = false;
            return Ok(()); // no stored key can live under an unsafe path
        }
        self.walk(dir)?;
        Ok(())
    }

    /// Returns false once the page is complete.
    fn walk(&mut self, dir: &str) -> Result<bool, S3Error> {
        let listing = match self.vfs.listing(self.bucket, dir) {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.inputs.checkable = false;
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let read = (self.bucket.to_string(), dir.to_string(), listing.clone());
        self.inputs.listings.push(read);
        // Entries before the marker are passed over by a binary search, not one by one: the
        // entries are sorted, and the one directory the marker may lie in is the last of them.
        let start = match self.after.and_then(|a| a.strip_prefix(dir)) {
            Some(rest) => listing.entries.partition_point(|e| {
                e.name.as_str() < rest && !(e.is_dir && rest.starts_with(e.name.as_str()))
            }),
            None => 0,
        };
        for (i, entry) in listing.entries.iter().enumerate().skip(start) {
            let mut name = String::with_capacity(dir.len() + entry.name.len());
            name.push_str(dir);
            name.push_str(&entry.name);
            let more = if entry.is_dir {
                self.enter(name, listing.dev, entry.ino)?
            } else {
                self.offer(name, Entry(listing.clone(), i))
            };
            if !more {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Enters directory `dir`, on device `dev` with inode `ino` (0 where unknown).
    fn enter(&mut self, dir: String, dev: u64, ino: u64) -> Result<bool, S3Error> {
        // An empty prefix is the common case; it needs no comparison.
        let under = self.prefix.is_empty() || dir.starts_with(self.prefix);
        if !(under || self.prefix.starts_with(dir.as_str())) {
            return Ok(true);
        }
        if let Some(after) = self.after {
            let before_marker = after > dir.as_str() && !after.starts_with(dir.as_str());
            if before_marker || (self.skip_under_after && dir.starts_with(after)) {
                return Ok(true);
            }
        }
        if let Some(Item::Prefix(last)) = self.items.last() {
            if dir.starts_with(last.as_str()) {
                return Ok(true);
            }
        }
        if under && self.delimiter == Some("/") {
            let inputs = &mut self.inputs;
            if !self.probe.has_object(self.bucket, &dir, dev, ino, inputs)? {
                return Ok(true);
            }
            return Ok(self.push(Item::Prefix(dir)));
        }
        self.walk(&dir)
    }

    fn offer(&mut self, key: String, entry: Entry) -> bool {
        if !key.starts_with(self.prefix) {
            return true;
        }
        if let Some(after) = self.after {
            if key.as_str() <= after || (self.skip_under_after && key.starts_with(after)) {
                return true;
            }
        }
        let item = match self
            .delimiter
            .and_then(|d| Some((d, key[self.prefix.len()..].find(d)?)))
        {
            Some((d, i)) => Item::Prefix(key[..self.prefix.len() + i + d.len()].to_string()),
            None => Item::Key(key, entry),
        };
        if let (Item::Prefix(p), Some(Item::Prefix(last))) = (&item, self.items.last()) {
            if p == last {
                return true;
            }
        }
        if let (Item::Prefix(p), Some(after)) = (&item, self.after) {
            if self.skip_under_after && p == after {
                return true;
            }
        }
        self.push(item)
    }

    fn push(&mut self, item: Item) -> bool {
        if self.items.len() >= self.max {
            self.truncated = self.max > 0;
            return false;
        }
        self.items.push(item);
        true
    }
}

struct Params<'a> {
    prefix: &'a str,
    delimiter: Option<&'a str>,
    max: usize,
    url: bool,
}

fn params<'a>(rq: &'a Request) -> Result<Params<'a>, S3Error> {
    let max = match rq.query.get("max-keys") {
        None => MAX_KEYS,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                S3Error::new(
                    Code::InvalidArgument,
                    "Provided max-keys not an integer or within integer range",
                )
                .with("ArgumentName", "max-keys")
            })?
            .min(MAX_KEYS as i64) as usize,
    };
    let url = match rq.query.get("encoding-type") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("url") => true,
        Some(_) => {
            return Err(S3Error::new(
                Code::InvalidArgument,
                "Invalid Encoding Method specified in Request",
            )
            .with("ArgumentName", "encoding-type"))
        }
    };
    Ok(Params {
        prefix: rq.query.get("prefix").unwrap_or(""),
        delimiter: rq.query.get("delimiter").filter(|d| !d.is_empty()),
        max,
        url,
    })
}

/// The walk for one page: its items, whether more follow, and what they were computed from.
fn run_walk(
    ctx: &Ctx,
    rq: &Request,
    p: &Params,
    after: Option<&str>,
) -> Result<(Vec<Item>, bool, Inputs), S3Error> {
    let skip_under_after = match (after, p.delimiter) {
        (Some(a), Some(d)) => a.ends_with(d),
        _ => false,
    };
    let mut walk = Walk {
        vfs: ctx.vfs,
        probe: ctx.vfs.prefix_probe(),
        bucket: &rq.bucket,
        prefix: p.prefix,
        delimiter: p.delimiter,
        after,
        skip_under_after,
        max: p.max,
        items: Vec::new(),
        truncated: false,
        inputs: Inputs::new(),
    };
    walk.run()?;
    Ok((walk.items, walk.truncated, walk.inputs))
}

/// Answers a listing request once the bucket is checked: from a kept page when everything
/// it came from stands, else with the document `write` walks for and writes, which is kept
/// in turn. The key names every request field the document depends on: the common ones
/// and the version's `fields`.
fn answer_page(
    ctx: &Ctx,
    rq: &Request,
    p: &Params,
    fields: &[&str],
    write: impl FnOnce() -> Result<(Vec<u8>, Inputs), S3Error>,
) -> OpResult {
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let max = p.max.to_string();
    let common = [
        rq.bucket.as_str(),
        p.prefix,
        p.delimiter.unwrap_or(""),
        &max,
        if p.url { "url" } else { "" },
    ];
    let mut key = String::with_capacity(64);
    for f in common.iter().chain(fields) {
        // Lengths first, so that no two lists of fields make the same key.
        key.push_str(&f.len().to_string());
        key.push(':');
        key.push_str(f);
    }
    if let Some(body) = ctx.vfs.kept_page(&key) {
        return Ok(page_response(body));
    }
    let (doc, inputs) = write()?;
    let body = Arc::new(doc);
    ctx.vfs.keep_page(key, &body, inputs);
    Ok(page_response(body))
}

fn enc(s: &str, url: bool) -> Cow<'_, str> {
    if url {
        util::uri_encode(s, true).into()
    } else {
        s.into()
    }
}

/// What the listing shows of each key of the page (None: gone since the walk), read before
/// the document is written so that its head can give the count.
fn briefs<'a>(ctx: &Ctx, rq: &Request, items: &'a [Item]) -> Vec<Option<&'a Brief>> {
    items
        .iter()
        .map(|item| match item {
            Item::Key(k, Entry(listing, i)) => ctx.vfs.brief(&rq.bucket, k, &listing.entries[*i]),
            Item::Prefix(_) => None,
        })
        .collect()
}

/// A writer with room for the page.
fn page_writer(items: &[Item]) -> XmlWriter {
    XmlWriter::with_capacity(1024 + items.len() * 320)
}

/// Writes Contents and CommonPrefixes.
fn write_items(
    w: &mut XmlWriter,
    ctx: &Ctx,
    items: &[Item],
    briefs: &[Option<&Brief>],
    url: bool,
    with_owner: bool,
) {
    for (item, brief) in items.iter().zip(briefs) {
        let (Item::Key(k, _), Some(info)) = (item, brief) else {
            continue;
        };
        w.open("Contents");
        w.elem("Key", &enc(k, url));
        w.elem_display("LastModified", util::Iso8601(info.mtime));
        if let Some(etag) = info.etag.as_deref() {
            w.elem("ETag", &quote(etag));
        }
        w.elem_display("Size", info.size);
        if with_owner {
            owner(w, &ctx.opts.owner);
        }
        w.elem("StorageClass", "STANDARD");
        w.close("Contents");
    }
    for item in items {
        let Item::Prefix(p) = item else { continue };
        w.markup("<CommonPrefixes><Prefix>");
        w.text(&enc(p, url));
        w.markup("</Prefix></CommonPrefixes>");
    }
}

fn write_common(w: &mut XmlWriter, rq: &Request, p: &Params) {
    w.elem("Name", &rq.bucket);
    w.elem("Prefix", &enc(p.prefix, p.url));
    if let Some(d) = p.delimiter {
        w.elem("Delimiter", &enc(d, p.url));
    }
    w.elem_display("MaxKeys", p.max);
    if p.url {
        w.elem("EncodingType", "url");
    }
}

pub fn list_objects_v2(ctx: &Ctx, rq: &mut Request) -> OpResult {
    let p = params(rq)?;
    let token = match rq.query.get("continuation-token") {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let start_after = rq.query.get("start-after").filter(|s| !s.is_empty());
    let with_owner = rq.query.get("fetch-owner") == Some("true");
    let fields = [
        "v2",
        if with_owner { "owner" } else { "" },
        rq.query.get("continuation-token").unwrap_or(""),
        start_after.unwrap_or(""),
    ];
    answer_page(ctx, rq, &p, &fields, || {
        let after = token.as_deref().or(start_after);
        let (items, truncated, inputs) = run_walk(ctx, rq, &p, after)?;
        let briefs = briefs(ctx, rq, &items);
        let count = briefs.iter().flatten().count()
            + items
                .iter()
                .filter(|i| matches!(i, Item::Prefix(_)))
                .count();
        let mut w = page_writer(&items);
        w.root("ListBucketResult");
        write_common(&mut w, rq, &p);
        w.elem_display("KeyCount", count);
        w.elem("IsTruncated", if truncated { "true" } else { "false" });
        if let Some(t) = rq.query.get("continuation-token") {
            w.elem("ContinuationToken", t);
        }
        if truncated {
            if let Some(last) = items.last() {
                w.elem(
                    "NextContinuationToken",
                    &util::base64_url(last.name().as_bytes()),
                );
            }
        }
        if let Some(s) = start_after {
            w.elem("StartAfter", &enc(s, p.url));
        }
        write_items(&mut w, ctx, &items, &briefs, p.url, with_owner);
        w.close("ListBucketResult");
        Ok((w.finish(), inputs))
    })
}

pub fn list_objects(ctx: &Ctx, rq: &mut Request) -> OpResult {
    let p = params(rq)?;
    let marker = rq.query.get("marker").filter(|m| !m.is_empty());
    answer_page(ctx, rq, &p, &["v1", marker.unwrap_or("")], || {
        let (items, truncated, inputs) = run_walk(ctx, rq, &p, marker)?;
        let briefs = briefs(ctx, rq, &items);
        let mut w = page_writer(&items);
        w.root("ListBucketResult");
        write_common(&mut w, rq, &p);
        w.elem("Marker", &enc(marker.unwrap_or(""), p.url));
        w.elem("IsTruncated", if truncated { "true" } else { "false" });
        if truncated && p.delimiter.is_some() {
            if let Some(last) = items.last() {
                w.elem("NextMarker", &enc(last.name(), p.url));
            }
        }
        write_items(&mut w, ctx, &items, &briefs, p.url, true);
        w.close("ListBucketResult");
        Ok((w.finish(), inputs))
    })
}

/// A listing document, shared with the kept pages.
type Page = Arc<Vec<u8>>;

fn page_response(body: Page) -> Response {
    Response::empty(200)
        .header("Content-Type", "application/xml")
        .with_body(Body::Shared(body))
}

/// The name a continuation token (ours: the last name of the page before) stands for.
pub(crate) fn decode_token(t: &str) -> Result<String, S3Error> {
    util::unbase64(t)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            S3Error::new(
                Code::InvalidArgument,
                "The continuation token provided is incorrect",
            )
            .with("ArgumentName", "continuation-token")
        })
}
