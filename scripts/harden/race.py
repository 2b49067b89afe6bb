#!/usr/bin/env python3
"""Concurrency hardening for s3serve: many clients race on the same keys and prefixes.

What it does
  Starts s3serve ($S3SERVE_BIN, default target/release/s3serve) over a fresh directory (or two
  s3serve processes over the same directory with --instances 2; clients then alternate between
  the two URLs, and each multipart upload is created on one instance, has its parts uploaded
  on both, and is completed on the other). --threads client threads, each with its own boto3
  clients and a seeded RNG (--seed), run for --seconds: PUT (self-describing bodies, 0 B to a
  few MiB: a header with the key, the version id, the length and a SHA-1 of the rest), GET,
  HEAD, DELETE, DeleteObjects, CopyObject onto hot keys, multipart uploads completing onto hot
  keys (and some aborted), and ListObjects v1/v2 with and without a delimiter, paged with
  small MaxKeys too. The keys include ones that are both an object and a prefix ("a/b" and
  "a/b/c", "p/q" and "p/q/r/s"): on disk only one of the file a/b and the directory a/b can
  exist, so a PUT that needs the other answers 409 ObjectPathConflict (expected, counted).

Checks (every one is a violation, and the exit code is 1, if it fails)
  - every GET body is one whole version some PUT/multipart upload sent (never short, never
    a mix: length and SHA-1 from its header), its ETag matches those bytes, and HEAD's
    size/ETag pair is one version;
  - reads are not stale: a GET/HEAD returns the effect of an operation on that key that was
    not already superseded by an acknowledged one finished before the read began (the
    register rule of linearizability, on the client's monotonic clock);
  - listings never error, are strictly increasing across pages, show no temporary name and
    no unknown key, every listed size/ETag is one version sent for that key, and common
    prefixes only for folders that may hold an object; a listing that is behind (a key
    missing, deleted, or an older version) is recorded as a lag with its size, and is a
    violation only when the lag exceeds --dir-cache-time (+2 s for scheduling noise);
  - after the run (every instance asked): each key's state is the effect of an operation
    that was not superseded by an acknowledged one (so an acknowledged PUT of a/b/c is never
    lost to a racing DELETE of a/b), final listings agree with GET, no temporary files are
    left in the tree (servers running, and after they stop), no multipart upload is left in
    progress, no server panicked or died, and no request got an unexpected error (5xx,
    dropped connection, an error code that does not fit the operation).

Run (from the repo root; S3SERVE_BIN defaults to target/release/s3serve):
  quick (CI):  .venv/bin/python scripts/harden/race.py --seconds 40
               .venv/bin/python scripts/harden/race.py --seconds 40 --instances 2
               .venv/bin/python scripts/harden/race.py --seconds 40 --instances 2 --dir-cache-time 1s
  long:        .venv/bin/python scripts/harden/race.py --seconds 600 --threads 16 --instances 2
"""

import argparse
import bisect
import collections
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as rl  # noqa: E402
from _common import make_client  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BUCKET = "race"
HOT = ["k0", "k1", "k2", "k3", "d/x", "d/y", "d/e/f", "a/b", "a/b/c", "a/b/d", "p/q", "p/q/r/s", "p/q/t",
       "z/1/2/3/4", "z/1/2/5", "z/6"]
# Keys that need a directory where another key is a file, or the reverse.
CONFLICTING = {k for k in HOT for o in HOT if k != o and (o.startswith(k + "/") or k.startswith(o + "/"))}
PREFIXES = ["", "", "a/", "a/b", "a/b/", "d/", "p/", "p/q", "p/q/", "k", "z/", "z/1/2/"]
MIB = 1 << 20
PART = 5 * MIB
NEG = float("-inf")
POS = float("inf")


def parse_duration(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {s!r}")
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class Version:
    __slots__ = ("vid", "key", "size", "md5", "etags")

    def __init__(self, vid, key, size, md5, etags):
        self.vid, self.key, self.size, self.md5, self.etags = vid, key, size, md5, etags


class Mut:
    """A mutating operation on one key whose effect may have happened: kind put|mpu|copy|del,
    outcome ok (acknowledged) or unknown; vids = the versions it may leave (None: any)."""
    __slots__ = ("key", "kind", "start", "end", "ok", "vids", "desc")

    def __init__(self, key, kind, start, end, ok, vids, desc=""):
        self.key, self.kind, self.start, self.end, self.ok, self.vids, self.desc = key, kind, start, end, ok, vids, desc

    def makes(self, value):
        if value is None:
            return self.kind in ("del", "init")
        return self.kind not in ("del", "init") and (self.vids is None or value in self.vids)


class Race:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.versions = {rl.EMPTY_VID: Version(rl.EMPTY_VID, None, 0, hashlib.md5(b"").hexdigest(),
                                               {'"%s"' % hashlib.md5(b"").hexdigest()})}
        self.by_etag = {'"%s"' % hashlib.md5(b"").hexdigest(): rl.EMPTY_VID}
        self.muts = collections.defaultdict(list)   # key -> [Mut]
        self.reads = []       # (key, value, start, end, what)
        self.listings = []    # dict(...)
        self.counts = collections.Counter()   # what was tried / what it answered
        self.expected = collections.Counter()  # expected errors, by (op, status, code)
        self.violations = []
        self.lags = []        # (kind, lag_seconds, description)
        self.uploads_left = set()
        self.stop_at = 0.0

    # ---- bookkeeping -------------------------------------------------------------------------

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def violation(self, msg):
        with self.lock:
            self.violations.append(msg)
        if len(self.violations) <= 30:
            print("VIOLATION:", msg, flush=True)

    def register(self, vid, key, body, mp_etag=None):
        md5 = hashlib.md5(body).hexdigest()
        etags = {f'"{md5}"'} | ({mp_etag} if mp_etag else set())
        v = Version(vid, key, len(body), md5, etags)
        with self.lock:
            self.versions[vid] = v
            for e in etags:
                self.by_etag[e] = vid
        return v

    def add_mut(self, m):
        with self.lock:
            self.muts[m.key].append(m)

    def unexpected(self, op, key, e):
        status, code = err_of(e)
        self.count(f"{op}:unexpected")
        self.violation(f"{op} {key}: unexpected answer {status} {code}: {str(e)[:300]}")

    # ---- operations --------------------------------------------------------------------------

    def size_for(self, rng, key, vid):
        r = rng.random()
        top = self.args.max_size
        if r < 0.05:
            return 0
        lo = rl.header_len(key, vid, top)
        if r < 0.6:
            return rng.randint(lo, 4096)
        if r < 0.85:
            return rng.randint(4096, min(256 << 10, top))
        return rng.randint(min(256 << 10, top), top)

    def op_put(self, c, rng, tid, seq):
        key = rng.choice(HOT)
        vid = f"w{tid}s{seq}"
        body = rl.make_body(rng, key, vid, self.size_for(rng, key, vid))
        if not body:
            vid = rl.EMPTY_VID
        v = self.register(vid, key, body)
        t0 = time.monotonic()
        try:
            r = c.put_object(Bucket=BUCKET, Key=key, Body=body)
        except Exception as e:
            t1 = time.monotonic()
            if self.expected_error("put", key, e):
                return
            self.unexpected("put", key, e)
            self.add_mut(Mut(key, "put", t0, t1, False, {vid}, f"put {vid}"))
            return
        t1 = time.monotonic()
        self.count("put:ok")
        if r["ETag"] not in v.etags:
            self.violation(f"put {key} {vid}: ETag {r['ETag']} is not the body's MD5 {v.md5}")
        self.add_mut(Mut(key, "put", t0, t1, True, {vid}, f"put {vid}"))

    def expected_error(self, op, key, e):
        """Counts and returns True for the errors this operation may meet in a race."""
        status, code = err_of(e)
        ok = False
        if status == 409 and code == "ObjectPathConflict" and key in CONFLICTING:
            ok = True
        elif op in ("get", "copy") and status == 404 and code == "NoSuchKey":
            ok = True
        elif op == "head" and status == 404:
            ok = True
        if ok:
            with self.lock:
                self.expected[(op, status, code)] += 1
        return ok

    def read_value(self, op, key, body, etag, length):
        """The version a GET/HEAD answer holds; None after recording a violation."""
        if body is not None:
            if length is not None and len(body) != length:
                self.violation(f"{op} {key}: {len(body)} bytes, Content-Length {length} (short read)")
                return None
            vid, why = rl.parse_body(body)
            if vid is None:
                self.violation(f"{op} {key}: not a whole version: {why}")
                return None
            v = self.versions.get(vid)
            if v is None:
                self.violation(f"{op} {key}: version {vid} was never sent")
                return None
            if etag not in v.etags:
                self.violation(f"{op} {key}: ETag {etag} does not match the bytes of {vid} ({v.etags})")
                return None
            return vid
        vid = self.by_etag.get(etag)
        if vid is None:
            self.violation(f"{op} {key}: ETag {etag} is no version's")
            return None
        if self.versions[vid].size != length:
            self.violation(f"{op} {key}: size {length} with ETag {etag}, but {vid} is {self.versions[vid].size} bytes")
            return None
        return vid

    def op_get(self, c, rng, head=False):
        key = rng.choice(HOT)
        op = "head" if head else "get"
        t0 = time.monotonic()
        try:
            if head:
                r = c.head_object(Bucket=BUCKET, Key=key)
                body = None
            else:
                r = c.get_object(Bucket=BUCKET, Key=key)
                body = r["Body"].read()
        except Exception as e:
            t1 = time.monotonic()
            if self.expected_error(op, key, e):
                self.reads.append((key, None, t0, t1, op))
                return
            self.unexpected(op, key, e)
            return
        t1 = time.monotonic()
        self.count(f"{op}:ok")
        vid = self.read_value(op, key, body, r["ETag"], r["ContentLength"])
        if vid is not None:
            self.reads.append((key, vid, t0, t1, op))

    def op_delete(self, c, rng):
        key = rng.choice(HOT)
        t0 = time.monotonic()
        try:
            c.delete_object(Bucket=BUCKET, Key=key)
        except Exception as e:
            self.unexpected("delete", key, e)
            self.add_mut(Mut(key, "del", t0, time.monotonic(), False, None, "delete"))
            return
        self.count("delete:ok")
        self.add_mut(Mut(key, "del", t0, time.monotonic(), True, None, "delete"))

    def op_delete_objects(self, c, rng):
        keys = rng.sample(HOT, rng.randint(2, 4))
        t0 = time.monotonic()
        try:
            r = c.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})
        except Exception as e:
            self.unexpected("delete_objects", keys, e)
            t1 = time.monotonic()
            for k in keys:
                self.add_mut(Mut(k, "del", t0, t1, False, None, "delete_objects"))
            return
        t1 = time.monotonic()
        self.count("delete_objects:ok")
        deleted = {d["Key"] for d in r.get("Deleted", [])}
        for e in r.get("Errors", []):
            self.violation(f"delete_objects: error for {e.get('Key')}: {e.get('Code')} {e.get('Message')}")
        for k in keys:
            if k not in deleted and not any(e.get("Key") == k for e in r.get("Errors", [])):
                self.violation(f"delete_objects: {k} neither deleted nor in error")
            self.add_mut(Mut(k, "del", t0, t1, k in deleted, None, "delete_objects"))

    def op_copy(self, c, rng):
        src, dst = rng.sample(HOT, 2)
        t0 = time.monotonic()
        try:
            r = c.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": src})
        except Exception as e:
            t1 = time.monotonic()
            status, code = err_of(e)
            if self.expected_error("copy", dst, e):
                return
            self.unexpected("copy", f"{src}->{dst}", e)
            self.add_mut(Mut(dst, "copy", t0, t1, False, None, f"copy from {src}"))
            return
        t1 = time.monotonic()
        self.count("copy:ok")
        etag = r["CopyObjectResult"]["ETag"]
        vid = self.by_etag.get(etag)
        if vid is None:
            self.violation(f"copy {src}->{dst}: ETag {etag} is no version's")
            self.add_mut(Mut(dst, "copy", t0, t1, True, None, f"copy from {src}"))
            return
        self.reads.append((src, vid, t0, t1, "copy-source"))
        self.add_mut(Mut(dst, "copy", t0, t1, True, {vid}, f"copy {vid} from {src}"))

    def op_multipart(self, clients, rng, tid, seq):
        """Create on one instance, parts on both (alternating), complete on the other; 1 in 8
        is aborted after its first part instead."""
        key = rng.choice(HOT)
        vid = f"w{tid}m{seq}"
        size = PART + rng.randint(1, self.args.max_size // 2)
        body = rl.make_body(rng, key, vid, size)
        parts = [body[:PART], body[PART:]]
        md5s = [hashlib.md5(p).digest() for p in parts]
        mp_etag = '"%s-%d"' % (hashlib.md5(b"".join(md5s)).hexdigest(), len(parts))
        v = self.register(vid, key, body, mp_etag)
        first = rng.randrange(len(clients))
        cl = lambda i: clients[(first + i) % len(clients)]  # noqa: E731
        abort = rng.random() < 0.125
        try:
            up = cl(0).create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        except Exception as e:
            self.unexpected("mpu-create", key, e)
            return
        with self.lock:
            self.uploads_left.add(up)
        order = [1, 2] if rng.random() < 0.7 else [2, 1]
        etags = {}
        raced = not abort and rng.random() < 0.3
        if raced:
            # Part 1 twice at once, on both instances, with another version's bytes racing
            # ours: a completion that names our part 1 must give our whole version, or fail.
            self.count("mpu:raced-part-1")
            rival = rl.make_body(rng, key, vid + "r", size)[:PART]
            got = {}

            def send(i, data):
                try:
                    got[i] = cl(i).upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=data)["ETag"]
                except Exception as e:  # noqa: BLE001
                    got[i] = e
            th = threading.Thread(target=send, args=(1, rival))
            th.start()
            send(0, parts[0])
            th.join()
            for i, r in got.items():
                if isinstance(r, Exception):
                    self.unexpected("mpu-part-race", key, r)
            etags[1] = got[0] if not isinstance(got[0], Exception) else '"%s"' % md5s[0].hex()
            order = [2]
        try:
            for i, n in enumerate(order):
                r = cl(i).upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=n, Body=parts[n - 1])
                etags[n] = r["ETag"]
                if r["ETag"] != '"%s"' % md5s[n - 1].hex():
                    self.violation(f"upload_part {key} {vid} #{n}: ETag {r['ETag']}")
                if abort:
                    break
        except Exception as e:
            self.unexpected("mpu-part", key, e)
            abort = True
        if abort:
            try:
                cl(1).abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up)
                self.count("mpu:aborted")
                with self.lock:
                    self.uploads_left.discard(up)
            except Exception as e:
                self.unexpected("mpu-abort", key, e)
            return
        t0 = time.monotonic()
        try:
            r = cl(len(clients) - 1 if len(clients) > 1 else 0).complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=up,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2)]})
        except Exception as e:
            t1 = time.monotonic()
            st, code = err_of(e)
            if raced and st == 400 and code == "InvalidPart":
                # The rival part 1 won the race for the number: S3 then refuses our ETag.
                with self.lock:
                    self.expected[("mpu-complete", st, code)] += 1
                try:
                    cl(0).abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up)
                    with self.lock:
                        self.uploads_left.discard(up)
                except Exception as e2:  # noqa: BLE001
                    self.unexpected("mpu-abort", key, e2)
                return
            if self.expected_error("mpu-complete", key, e):
                try:
                    cl(0).abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up)
                    with self.lock:
                        self.uploads_left.discard(up)
                except Exception as e2:
                    self.unexpected("mpu-abort", key, e2)
                return
            self.unexpected("mpu-complete", key, e)
            self.add_mut(Mut(key, "mpu", t0, t1, False, {vid}, f"mpu {vid}"))
            return
        t1 = time.monotonic()
        with self.lock:
            self.uploads_left.discard(up)
        self.count("mpu:completed")
        if r["ETag"] != mp_etag:
            self.violation(f"complete {key} {vid}: ETag {r['ETag']}, expected {mp_etag}")
        self.add_mut(Mut(key, "mpu", t0, t1, True, {vid}, f"mpu {vid}"))

    def op_list(self, c, rng, ci):
        prefix = rng.choice(PREFIXES)
        delim = rng.choice([None, "/"])
        max_keys = rng.choice([1, 2, 3, 5, 1000])
        v1 = rng.random() < 0.25
        name = f"list{'v1' if v1 else 'v2'} prefix={prefix!r} delim={delim!r} max={max_keys}"
        pages = []
        token = marker = None
        last_item = None
        for _ in range(200):
            kw = dict(Bucket=BUCKET, Prefix=prefix, MaxKeys=max_keys)
            if delim:
                kw["Delimiter"] = delim
            t0 = time.monotonic()
            try:
                if v1:
                    if marker is not None:
                        kw["Marker"] = marker
                    r = c.list_objects(**kw)
                else:
                    if token is not None:
                        kw["ContinuationToken"] = token
                    r = c.list_objects_v2(**kw)
            except Exception as e:
                self.unexpected(name, prefix, e)
                return
            t1 = time.monotonic()
            keys = [(o["Key"], o["Size"], o["ETag"]) for o in r.get("Contents", [])]
            cps = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            items = sorted([k for k, _, _ in keys] + cps)
            if len(keys) + len(cps) > max_keys:
                self.violation(f"{name}: {len(keys) + len(cps)} items in a page of MaxKeys {max_keys}")
            for it in items:
                if last_item is not None and it <= last_item:
                    self.violation(f"{name}: {it!r} after {last_item!r} (not strictly increasing across pages)")
                last_item = it
            truncated = r["IsTruncated"]
            pages.append(dict(start=t0, end=t1, keys=keys, cps=cps, truncated=truncated,
                              last=items[-1] if items else None))
            if not truncated:
                break
            if v1:
                marker = r.get("NextMarker") or (items[-1] if items else None)
                if marker is None:
                    self.violation(f"{name}: truncated page with nothing in it and no NextMarker")
                    return
            else:
                token = r.get("NextContinuationToken")
                if not token:
                    self.violation(f"{name}: truncated page without NextContinuationToken")
                    return
        else:
            self.violation(f"{name}: still truncated after 200 pages")
            return
        self.count(f"list:{'paged' if len(pages) > 1 else 'one-page'}{'+delim' if delim else ''}")
        self.listings.append(dict(name=name, prefix=prefix, delim=delim, pages=pages, instance=ci))

    # ---- the run -----------------------------------------------------------------------------

    def worker(self, tid, urls):
        rng = random.Random(self.args.seed * 1000 + tid)
        clients = [make_client(u, max_pool_connections=2) for u in urls]
        ops = ["put"] * 30 + ["get"] * 20 + ["head"] * 5 + ["delete"] * 8 + ["delobjs"] * 3 + \
              ["list"] * 12 + ["copy"] * 5 + ["mpu"] * self.args.mpu_weight
        seq = 0
        while time.monotonic() < self.stop_at:
            seq += 1
            op = rng.choice(ops)
            ci = seq % len(clients)
            c = clients[ci]
            self.count(f"tried:{op}")
            try:
                if op == "put":
                    self.op_put(c, rng, tid, seq)
                elif op == "get":
                    self.op_get(c, rng)
                elif op == "head":
                    self.op_get(c, rng, head=True)
                elif op == "delete":
                    self.op_delete(c, rng)
                elif op == "delobjs":
                    self.op_delete_objects(c, rng)
                elif op == "copy":
                    self.op_copy(c, rng)
                elif op == "mpu":
                    self.op_multipart(clients[ci:] + clients[:ci], rng, tid, seq)
                elif op == "list":
                    self.op_list(c, rng, ci)
            except Exception:
                self.violation(f"thread {tid}: harness error in {op}: {traceback.format_exc()}")


def err_of(e):
    if isinstance(e, ClientError):
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response.get("Error", {}).get("Code")
    return None, f"{type(e).__name__}"


class Checker:
    """Post-run checks of reads and listings against the recorded mutations of each key."""

    def __init__(self, race):
        self.race = race
        self.by_key = {}
        for key in HOT:
            muts = [Mut(key, "init", NEG, NEG, True, None, "initial (absent)")] + race.muts.get(key, [])
            acked = sorted((m for m in muts if m.ok), key=lambda m: m.end)
            ends = [m.end for m in acked]
            pmax, best = [], NEG
            for m in acked:
                best = max(best, m.start)
                pmax.append(best)
            self.by_key[key] = (muts, ends, pmax, acked)

    def barrier(self, key, rs):
        """The latest start among acknowledged operations that ended before rs."""
        muts, ends, pmax, acked = self.by_key[key]
        i = bisect.bisect_left(ends, rs)
        return pmax[i - 1] if i else NEG

    def candidates(self, key, rs, re_):
        b = self.barrier(key, rs)
        return [m for m in self.by_key[key][0] if m.end >= b and m.start < re_]

    def check(self, key, value, rs, re_):
        """None if `value` (a version id, or None for absent) may be key's state during
        [rs, re_]; else (lag_seconds, why). lag is None if no operation ever made it."""
        cands = self.candidates(key, rs, re_)
        if any(m.makes(value) for m in cands):
            return None
        makers = [m for m in self.by_key[key][0] if m.makes(value) and m.start < re_]
        if not makers:
            return (None, f"{key}={value}: no operation ever made this state before {re_:.3f}")
        e = max(m.end for m in makers)
        _, _, _, acked = self.by_key[key]
        sup = [m.end for m in acked if m.start > e and m.end < rs]
        lag = rs - min(sup) if sup else 0.0
        now = ", ".join(sorted({m.desc for m in cands}))[:200]
        return (lag, f"{key}={value}: superseded {lag:.3f}s before the read began (could be: {now})")

    def possible_present(self, key, rs, re_):
        return any(m.kind not in ("del", "init") for m in self.candidates(key, rs, re_))

    def last_present(self, key, re_):
        """When an operation that may have made key present last ended, before re_."""
        ends = [m.end for m in self.by_key[key][0] if m.kind not in ("del", "init") and m.start < re_]
        return max(ends) if ends else None

    def definitely_present(self, key, rs, re_):
        cands = self.candidates(key, rs, re_)
        return bool(cands) and not any(m.makes(None) for m in cands)

    def run(self, dir_cache_time):
        race = self.race
        nreads = 0
        for key, value, rs, re_, what in race.reads:
            nreads += 1
            bad = self.check(key, value, rs, re_)
            if bad:
                race.violation(f"stale or impossible {what}: {bad[1]}")
        race.counts["check:reads"] = nreads
        limit = dir_cache_time + 2.0
        npages = 0
        for L in race.listings:
            prev = None
            for pg in L["pages"]:
                npages += 1
                lo = prev
                hi = pg["last"] if pg["truncated"] else None
                prev = pg["last"] if pg["last"] is not None else prev
                self.check_page(L, pg, lo, hi, limit)
        race.counts["check:listing-pages"] = npages

    def item_of(self, key, prefix, delim):
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix):]
        if delim and delim in rest:
            return prefix + rest[: rest.index(delim) + 1]
        return key

    def lag(self, kind, lag, why, limit, L):
        self.race.lags.append((kind, lag, f"{L['name']} on instance {L['instance']}: {why}"))
        if lag is None or lag > limit:
            self.race.violation(f"listing {kind} beyond --dir-cache-time: {L['name']}: {why}")

    def check_page(self, L, pg, lo, hi, limit):
        race = self.race
        rs, re_ = pg["start"], pg["end"]
        prefix, delim = L["prefix"], L["delim"]
        listed = {}
        for key, size, etag in pg["keys"]:
            if rl.TEMP_PREFIX in key or ".s3serve" in key:
                race.violation(f"{L['name']}: temporary/hidden name listed: {key!r}")
                continue
            if key not in HOT:
                race.violation(f"{L['name']}: unknown key listed: {key!r}")
                continue
            if delim and delim in key[len(prefix):]:
                race.violation(f"{L['name']}: key {key!r} listed with delimiter inside")
            vid = race.by_etag.get(etag)
            if vid is None:
                race.violation(f"{L['name']}: {key} listed with ETag {etag} that is no version's (size {size})")
                continue
            if race.versions[vid].size != size:
                race.violation(f"{L['name']}: {key} listed with size {size}, ETag {etag} of {vid} "
                               f"({race.versions[vid].size} bytes): half-written or mixed")
                continue
            listed[key] = vid
        for cp in pg["cps"]:
            if ".s3serve" in cp or not cp.endswith("/") or not cp.startswith(prefix):
                race.violation(f"{L['name']}: bad common prefix {cp!r}")
                continue
            under = [k for k in HOT if k.startswith(cp)]
            if not under:
                race.violation(f"{L['name']}: common prefix {cp!r} holds no key ever written")
                continue
            if not any(self.possible_present(k, rs, re_) for k in under):
                # Every key under it was absent throughout: a folder with no object.
                lasts = [t for t in (self.last_present(k, re_) for k in under) if t is not None]
                self.lag("phantom-prefix", max(0.0, rs - max(lasts)) if lasts else None,
                         f"common prefix {cp!r} while no key under it could be present", limit, L)
        in_range = lambda it: (lo is None or it > lo) and (hi is None or it <= hi)  # noqa: E731
        cps = set(pg["cps"])
        for key in HOT:
            it = self.item_of(key, prefix, delim)
            if it is None or not in_range(it):
                continue
            if it == key:
                value = listed.get(key)
                bad = self.check(key, value, rs, re_)
                if bad:
                    if value is None:
                        kind = "missing-key"
                    elif self.possible_present(key, rs, re_):
                        kind = "old-version"
                    else:
                        kind = "deleted-key"
                    if value is not None and bad[0] is None:
                        race.violation(f"{L['name']}: {bad[1]}")
                    else:
                        self.lag(kind, bad[0], bad[1], limit, L)
            elif it not in cps and self.definitely_present(key, rs, re_):
                acked = [m.end for m in self.candidates(key, rs, re_) if m.ok and m.end < rs]
                self.lag("missing-prefix", rs - min(acked) if acked else 0.0,
                         f"common prefix {it!r} missing while {key} was present", limit, L)


def final_checks(race, servers, data_dir, dir_cache_time):
    chk = Checker(race)
    urls = [s.url for s in servers]
    clients = [make_client(u) for u in urls]
    state = {}
    for ci, c in enumerate(clients):
        for key in HOT:
            t0 = time.monotonic()
            try:
                r = c.get_object(Bucket=BUCKET, Key=key)
                body = r["Body"].read()
                vid = race.read_value("final-get", key, body, r["ETag"], r["ContentLength"])
                if vid is None:
                    continue  # not a whole version: already a violation
            except ClientError as e:
                if err_of(e)[0] != 404:
                    race.unexpected("final-get", key, e)
                    continue
                vid = None
            t1 = time.monotonic()
            race.count("check:final-keys")
            bad = chk.check(key, vid, t0, t1)
            if bad:
                race.violation(f"final state on instance {ci}: {bad[1]}")
            if ci == 0:
                state[key] = vid
            elif state.get(key) != vid:
                race.violation(f"final state: {key} is {state.get(key)} on instance 0, {vid} on instance {ci}")
    # Final listings must agree with GET (at once; a lag is recorded up to dir-cache-time).
    expect = {k: race.versions[v].size for k, v in state.items() if v is not None}
    for ci, c in enumerate(clients):
        t0 = time.monotonic()
        first = True
        while True:
            got = {}
            token = None
            while True:
                kw = dict(Bucket=BUCKET, MaxKeys=4)
                if token:
                    kw["ContinuationToken"] = token
                r = c.list_objects_v2(**kw)
                got.update({o["Key"]: o["Size"] for o in r.get("Contents", [])})
                if not r["IsTruncated"]:
                    break
                token = r["NextContinuationToken"]
            if got == expect:
                break
            waited = time.monotonic() - t0
            if waited > dir_cache_time + 2.0:
                race.violation(f"final listing on instance {ci} still differs from GET after {waited:.1f}s: "
                               f"listed {sorted(got.items())}, present {sorted(expect.items())}")
                break
            time.sleep(0.2)
            first = False
        if not first and got == expect:
            race.lags.append(("final-listing", time.monotonic() - t0, f"instance {ci}"))
        race.count("check:final-listings")
        # Delimiter listing: every common prefix holds an object.
        r = c.list_objects_v2(Bucket=BUCKET, Delimiter="/")
        for p in r.get("CommonPrefixes", []):
            if not any(k.startswith(p["Prefix"]) for k in expect):
                race.violation(f"final delimiter listing on instance {ci}: common prefix {p['Prefix']} holds no object")
    # Uploads in progress.
    try:
        r = clients[0].list_multipart_uploads(Bucket=BUCKET)
        live = {u["UploadId"] for u in r.get("Uploads", [])}
        if live:
            race.violation(f"multipart uploads left in progress: {len(live)} "
                           f"(the harness left {len(race.uploads_left)} unfinished)")
    except Exception as e:
        race.unexpected("list_multipart_uploads", "", e)
    # Temporaries in the tree while the servers run (poll: writers may still be closing).
    deadline = time.monotonic() + 10
    while True:
        temps = rl.temp_files(data_dir)
        if not temps or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if temps:
        race.violation(f"temporary files left in the tree with the servers running: {temps[:10]}")
    race.count("check:temp-scan-running")
    return chk


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=12)
    ap.add_argument("--instances", type=int, choices=(1, 2), default=1)
    ap.add_argument("--dir-cache-time", type=str, default=None,
                    help="passed to every server (default: the server's own, 5m)")
    ap.add_argument("--workers", type=int, default=None, help="--workers for the servers")
    ap.add_argument("--max-size", type=int, default=3 * MIB, help="largest single PUT body (default 3 MiB)")
    ap.add_argument("--mpu-weight", type=int, default=2, help="relative weight of multipart uploads (PUT is 30)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    ap.add_argument("--extra-flag", action="append", default=[], help="another server flag (repeatable)")
    args = ap.parse_args()
    binary = rl.default_bin()
    dct = parse_duration(args.dir_cache_time) if args.dir_cache_time is not None else 300.0
    work = Path(tempfile.mkdtemp(prefix="s3serve-race-"))
    data = work / "data"
    data.mkdir()
    flags = list(args.extra_flag)
    if args.dir_cache_time is not None:
        flags += ["--dir-cache-time", args.dir_cache_time]
    if args.workers:
        flags += ["--workers", str(args.workers)]
    print(f"race: {binary} x{args.instances} flags={flags} seed={args.seed} threads={args.threads} "
          f"seconds={args.seconds} data={data}", flush=True)
    race = Race(args)
    servers = []
    t_begin = time.monotonic()
    try:
        for _ in range(args.instances):
            servers.append(rl.start_server(data, flags, work))
        make_client(servers[0].url).create_bucket(Bucket=BUCKET)
        urls = [s.url for s in servers]
        race.stop_at = time.monotonic() + args.seconds
        threads = [threading.Thread(target=race.worker, args=(t, urls[t % len(urls):] + urls[:t % len(urls)]),
                                    daemon=True) for t in range(args.threads)]
        for t in threads:
            t.start()
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                done = sum(v for k, v in race.counts.items() if k.startswith("tried:"))
                print(f"  {last - t_begin:5.0f}s: {done} operations, {len(race.violations)} violations", flush=True)
            if time.monotonic() > race.stop_at + 300:
                race.violation("client threads did not finish within 300 s after the end (hung requests)")
                break
        for i, s in enumerate(servers):
            if s.proc.poll() is not None:
                race.violation(f"server {i} died during the run (exit {s.proc.returncode})")
        chk = Checker(race)
        chk.run(dct)
        final_checks(race, servers, data, dct)
    finally:
        for i, s in enumerate(servers):
            alive = s.proc.poll() is None
            code = s.stop()
            if alive and code not in (0, None):
                race.violation(f"server {i} exited with {code} on SIGTERM")
            if "panicked at" in s.log():
                race.violation(f"server {i} logged a panic:\n{s.log()[-3000:]}")
    temps = rl.temp_files(data)
    race.count("check:temp-scan-stopped")
    if temps:
        race.violation(f"temporary files left in the tree after the servers stopped: {temps[:10]}")
    empties = rl.empty_dirs(data / BUCKET)
    elapsed = time.monotonic() - t_begin

    # ---- report ------------------------------------------------------------------------------
    print(f"\nrace: done in {elapsed:.1f}s (load {args.seconds:.0f}s, {args.instances} instance(s))")
    print("operations tried / answers:")
    for k in sorted(race.counts):
        if not k.startswith("check:"):
            print(f"  {k:28s} {race.counts[k]}")
    print("expected errors (counted, not violations):")
    for (op, st, code), n in sorted(race.expected.items(), key=str):
        print(f"  {op:12s} {st} {code}: {n}")
    overlaps = 0
    for key in HOT:
        for d in (m for m in race.muts.get(key, []) if m.kind == "del"):
            for k2 in HOT:
                if k2.startswith(key + "/"):
                    overlaps += sum(1 for m in race.muts.get(k2, []) if m.kind in ("put", "mpu", "copy")
                                    and m.ok and m.start < d.end and d.start < m.end)
    print(f"  deletes of an object-and-prefix key overlapping an acknowledged write below it: {overlaps}")
    print("checks held:")
    for k in sorted(race.counts):
        if k.startswith("check:"):
            print(f"  {k[6:]:28s} {race.counts[k]}")
    print(f"  versions sent: {len(race.versions) - 1}")
    if race.lags:
        by = collections.defaultdict(list)
        for kind, lag, why in race.lags:
            by[kind].append(lag)
        print(f"listing lags (reported, violations only beyond --dir-cache-time {dct:g}s + 2s):")
        for kind, lags in sorted(by.items()):
            known = [x for x in lags if x is not None]
            print(f"  {kind}: {len(lags)}, max {max(known) if known else 0:.3f}s")
        for kind, lag, why in race.lags[:5]:
            print(f"    e.g. {kind}: {why[:300]}")
    else:
        print("listing lags: none seen")
    if empties:
        print(f"note: {len(empties)} empty directories left in the bucket (not objects; not listed): {empties[:8]}")
    if race.violations:
        print(f"\nFAIL: {len(race.violations)} violation(s); first ones:")
        for v in race.violations[:15]:
            print("  -", v[:1000])
        print(f"(data and logs in {work})")
        sys.exit(1)
    print("\nPASS: no violations")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"(data and logs in {work})")


if __name__ == "__main__":
    main()
