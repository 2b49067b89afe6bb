#!/usr/bin/env python3
"""Crash hardening: SIGKILL s3serve at random moments of its writes, restart it on the same
directory, and check that nothing acknowledged is lost and nothing half-written shows.

Each round picks one kind of load (cycling through all kinds in a seeded shuffled order),
starts two client threads doing it against the server, and sends SIGKILL after a random
delay while requests are in flight:

  put_small       PUT of 0-64 KiB bodies, overwriting a small key set
  put_large       PUT of 2-9 MiB bodies (spooled, linked into place)
  upload_part     UploadPart of 5 MiB (in-place slots) and uneven (own files) parts, re-uploads
  complete        CompleteMultipartUpload of prepared uploads: equal parts (linked, no copy)
                  and uneven parts (joined with copy_file_range)
  copy            CopyObject of 1 KiB and 6 MiB sources over existing keys
  delete_objects  DeleteObjects batches (and PUTs that bring keys back)
  writeback       a gateway (s3serve --vfs-cache-mode writes --vfs-write-back 2s in front of a
                  second s3serve upstream): PUTs and DELETEs, killed while uploads are pending

After each restart it checks:
  - every key equals its last acknowledged version (bytes by MD5, ETag, listed size/ETag), or,
    for a key with a request in flight at the kill, one of the versions sent in full (or
    absent where a delete was in flight); no key shows that no client ever wrote;
  - no temporary is left anywhere in the tree after the start-up sweep (names starting with
    `.s3serve-tmp-`, src/temps.rs, or ending `.s3serve-tmp`, the cache's records), polled;
  - open multipart uploads continue: ListParts shows every acknowledged part (and an in-flight
    one only as its old or new version), another UploadPart and Complete work and give the
    right bytes and ETag; a Complete cut short either finished or can be completed again;
  - for the gateway: its cache's tmp/ and the spool ($TMPDIR) are empty, and every write it
    acknowledged (and whatever it shows) reaches the upstream after the restart (polled,
    up to 180 s), with nothing extra left there;
  - no server logged a panic.

Run (quick, about 60-90 s on 2 cores; the CI version):
    .venv/bin/python scripts/harden/crash.py
Long (several hundred kills, about 20 min):
    .venv/bin/python scripts/harden/crash.py --rounds 400
Options: --seed N (default 1), --rounds N (default 32), --keep (keep the work dir),
--only KIND[,KIND] (restrict the kinds of rounds).
Exits 1 on any violation, printing each one as `VIOLATION [where] what`.
"""

import argparse
import collections
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    UPSTREAM_AK, UPSTREAM_SK, ClientError, Server, Version, Violations, describe, files_in,
    find_temps, md5hex, multipart_etag, panics, poll, s3_error, table,
)
import conftest  # noqa: E402  (after _common, which puts it on the path)

BUCKET = "crash"
GW_BUCKET = "gw"
MIB = 1 << 20
KINDS = ["put_small", "put_large", "upload_part", "complete", "copy", "delete_objects", "create_abort",
         "writeback"]
THREADS = 2
# Seconds from "go" to SIGKILL, per kind: chosen so that requests are mid-way when it lands.
DELAY = {
    "put_small": (0.01, 0.4),
    "put_large": (0.02, 1.0),
    "upload_part": (0.02, 0.8),
    "complete": (0.0, 0.12),
    "copy": (0.01, 0.6),
    "delete_objects": (0.01, 0.4),
    "create_abort": (0.01, 0.4),
    "writeback": (0.1, 3.0),
}


class Dead(Exception):
    """The server is gone (or the round is over): the worker stops."""


class Model:
    """What the clients know about each key: the last acknowledged version (None: absent)
    and the versions sent since without an answer."""

    def __init__(self):
        self.acked = {}
        self.inflight = collections.defaultdict(list)
        self.touched = set()  # keys written since the last check

    def begin(self, key, v):
        self.inflight[key].append(v)
        self.touched.add(key)

    def ack(self, key, v):
        self.acked[key] = v
        self.inflight[key] = []

    def allowed(self, key):
        return [self.acked.get(key)] + self.inflight.get(key, [])

    def keys(self):
        return set(self.acked) | {k for k, v in self.inflight.items() if v}

    def settle(self, key, v):
        """After a check: what the server shows is now the truth."""
        self.acked[key] = v
        self.inflight[key] = []


class Upload:
    """A multipart upload the clients hold open across rounds."""

    def __init__(self, uid, key):
        self.id, self.key = uid, key
        self.acked = {}  # number -> body
        self.inflight = collections.defaultdict(list)


class Rig:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)
        # Bodies are slices of one seeded pool, each made unique by a header.
        self.pool = random.Random(args.seed ^ 0x5EED).randbytes(12 * MIB)
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.v = Violations()
        self.model = Model()
        self.gw_model = Model()
        self.uploads = {}  # worker index -> Upload (upload_part rounds)
        self.data = work / "data"
        self.data.mkdir()
        (self.data / BUCKET).mkdir()
        self.srv = None
        self.dead_servers = []
        # the gateway
        self.up_dir = work / "upstream"
        (self.up_dir / GW_BUCKET).mkdir(parents=True)
        self.cache_dir = work / "cache"
        self.spool_dir = work / "gw-tmp"
        self.spool_dir.mkdir()
        self.upstream = None
        self.gw = None
        # counters
        self.rounds = collections.Counter()
        self.kills_inflight = collections.Counter()
        self.ops_done = collections.Counter()
        self.checks = collections.Counter()
        self.early_errors = collections.Counter()
        self.notes = []
        self.dirty_at_kill = []
        self.sweep_times = []
        self.temps_at_kill = 0
        self.known_temps = set()
        self.complete_times = []
        self.aborting = set()  # uploads created and not (yet) acknowledged as aborted

    # ---- bodies
    def body(self, size, tag):
        with self.seq_lock:
            self.seq += 1
            n = self.seq
        head = f"{tag}#{n};".encode()
        size = max(size, len(head))
        rest = size - len(head)
        off = random.Random(n).randrange(0, len(self.pool) - rest + 1)
        return f"{tag}#{n}".encode(), head + self.pool[off:off + rest]

    # ---- servers
    def start_local(self):
        self.srv = Server(self.data, flags=["--multipart-expiry", "0"], workdir=self.work)
        return self.srv

    def start_gateway(self):
        if self.upstream is None:
            self.upstream = Server(self.up_dir, auth=((UPSTREAM_AK, UPSTREAM_SK),), workdir=self.work)
        remote = (f":s3,provider=Other,endpoint='{self.upstream.url}',"
                  f"access_key_id={UPSTREAM_AK},secret_access_key={UPSTREAM_SK}:")
        self.gw = Server(remote, workdir=self.work, env={"TMPDIR": str(self.spool_dir)},
                         flags=["--vfs-cache-mode", "writes", "--cache-dir", str(self.cache_dir),
                                "--vfs-write-back", "2s"])
        return self.gw

    def client(self, srv):
        return srv.client()

    # ---- checks of the model against a server
    def check_objects(self, srv, model, bucket, where, prefix="", full=False):
        """Every key against the model: bytes (GET) of each key touched since the last check,
        of small ones and, with `full`, of all; size and ETag (HEAD) of the others."""
        c = srv.client()
        listed = {}
        token = None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = c.list_objects_v2(**kw)
            for o in r.get("Contents", []):
                listed[o["Key"]] = (o["Size"], o["ETag"].strip('"'))
            if not r["IsTruncated"]:
                break
            token = r["NextContinuationToken"]
        keys = {k for k in model.keys() if k.startswith(prefix)} | set(listed)
        for key in sorted(keys):
            allowed = model.allowed(key)
            if key not in model.acked and not model.inflight.get(key):
                self.v.add(where, f"{bucket}/{key} is listed but no client ever wrote it: {listed[key]}")
                continue
            acked = model.acked.get(key)
            head_only = (not full and key not in model.touched and not model.inflight.get(key)
                         and acked is not None and acked.size > MIB)
            try:
                if head_only:
                    r = c.head_object(Bucket=bucket, Key=key)
                    # Same size and ETag as acknowledged: take the bytes as checked last time.
                    got = (acked.md5 if (r["ContentLength"], r["ETag"].strip('"')) == (acked.size, acked.etag)
                           else "?", r["ContentLength"], r["ETag"].strip('"'))
                else:
                    r = c.get_object(Bucket=bucket, Key=key)
                    body = r["Body"].read()
                    got = (md5hex(body), len(body), r["ETag"].strip('"'))
            except ClientError as e:
                st = s3_error(e)
                if st[1] not in ("NoSuchKey", "404"):
                    self.v.add(where, f"GET {bucket}/{key} failed: {st}")
                    continue
                got = None
            if got is None:
                match = [a for a in allowed if a is None]
                if key in listed:
                    self.v.add(where, f"{bucket}/{key} is listed {listed[key]} but GET says NoSuchKey")
            else:
                match = [a for a in allowed if a is not None and a.md5 == got[0] and a.size == got[1]]
                if match and match[0].etag != got[2]:
                    self.v.add(where, f"{bucket}/{key}: bytes of {match[0]!r} but ETag {got[2]}")
                if key not in listed:
                    self.v.add(where, f"{bucket}/{key}: GET gives {got[1]} bytes but it is not listed")
                elif listed[key] != (got[1], got[2]):
                    self.v.add(where, f"{bucket}/{key}: listed as {listed[key]}, GET gives {(got[1], got[2])}")
            if not match:
                exp = ", ".join(describe(a) for a in allowed)
                gotd = "absent" if got is None else f"{got[1]}B md5={got[0][:8]} etag={got[2][:12]}"
                acked = describe(model.acked.get(key))
                self.v.add(where, f"{bucket}/{key} is {gotd}; allowed: {exp} (acknowledged: {acked})")
                continue
            self.checks["objects: exact or a whole sent version"] += 1
            self.checks["objects: bytes compared (GET)" if not head_only else "objects: size+ETag compared (HEAD)"] += 1
            if not model.inflight.get(key):
                self.checks["objects: acknowledged ones read back exactly"] += 1
            elif len({describe(a) for a in allowed}) > 1:
                self.checks["objects: in flight at the kill, old or new"] += 1
            model.settle(key, match[0])
        model.touched.clear()
        return listed

    def check_temps(self, roots, where):
        """Polls until the start-up sweep has removed every temporary; each one left is
        reported once (and then ignored, so one leak does not fail every later round)."""
        t0 = time.monotonic()

        def new(r):
            return [t for t in find_temps(r) if (r, t) not in self.known_temps]
        left = poll(lambda: not any(new(r) for r in roots), timeout=30)
        if not left:
            for r in roots:
                if new(r):
                    self.v.add(where, f"temporaries left 30 s after start-up under {r}: {new(r)[:10]}")
                    self.known_temps |= {(r, t) for t in new(r)}
            return
        self.sweep_times.append(time.monotonic() - t0)
        self.checks["no temporaries after the start-up sweep"] += 1

    def check_uploads(self, srv, where):
        """Open uploads: ListParts shows acknowledged parts; another part and Complete work."""
        c = srv.client()
        for w, up in list(self.uploads.items()):
            try:
                listed = {}
                marker = 0
                while True:
                    r = c.list_parts(Bucket=BUCKET, Key=up.key, UploadId=up.id, PartNumberMarker=marker)
                    for p in r.get("Parts", []):
                        listed[p["PartNumber"]] = (p["ETag"].strip('"'), p["Size"])
                    if not r.get("IsTruncated"):
                        break
                    marker = r["NextPartNumberMarker"]
            except ClientError as e:
                self.v.add(where, f"ListParts of upload {up.id} ({up.key}) failed after the restart: {s3_error(e)}")
                del self.uploads[w]
                continue
            numbers = set(listed) | set(up.acked) | {n for n, l in up.inflight.items() if l}
            ok = True
            for n in sorted(numbers):
                allowed = [up.acked.get(n)] + up.inflight.get(n, [])
                got = listed.get(n)
                match = [a for a in allowed if (a is None and got is None)
                         or (a is not None and got is not None and md5hex(a) == got[0] and len(a) == got[1])]
                if not match:
                    ok = False
                    exp = ["absent" if a is None else f"{len(a)}B {md5hex(a)[:8]}" for a in allowed]
                    self.v.add(where, f"upload {up.id} part {n} is {got}; allowed {exp}")
                    continue
                if match[0] is None:
                    up.acked.pop(n, None)
                else:
                    up.acked[n] = match[0]
                up.inflight[n] = []
            if not ok:
                continue
            self.checks["ListParts: acknowledged parts kept"] += 1
            # Continue: one more (last, small) part, then Complete; the bytes must be right.
            tag, last = self.body(MIB + random.Random(up.id).randrange(4096), f"{up.key}:last")
            try:
                r = c.upload_part(Bucket=BUCKET, Key=up.key, UploadId=up.id, PartNumber=9, Body=last)
                if r["ETag"].strip('"') != md5hex(last):
                    self.v.add(where, f"UploadPart after restart: ETag {r['ETag']} for {md5hex(last)}")
                up.acked[9] = last
                parts = [up.acked[n] for n in sorted(up.acked)]
                v = Version.of(f"{up.key}:mp({len(parts)})", b"".join(parts), multipart_etag(parts))
                self.model.begin(up.key, v)
                r = c.complete_multipart_upload(
                    Bucket=BUCKET, Key=up.key, UploadId=up.id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{md5hex(up.acked[n])}"'}
                                               for n in sorted(up.acked)]})
                if r["ETag"].strip('"') != v.etag:
                    self.v.add(where, f"Complete after restart: ETag {r['ETag']}, expected {v.etag}")
                self.model.ack(up.key, v)
            except ClientError as e:
                self.v.add(where, f"continuing upload {up.id} after the restart failed: {s3_error(e)}")
                del self.uploads[w]
                continue
            del self.uploads[w]
            self.checks["uploads continue after restart (part + Complete)"] += 1

    def check_dead_log(self, srv, where):
        for p in panics([srv]):
            self.v.add(where, f"panic logged: {p}")


# ---------------------------------------------------------------------------------------------
# Workers


class Worker(threading.Thread):
    def __init__(self, rig, idx, kind, srv, model, bucket, rng):
        super().__init__(daemon=True)
        self.rig, self.idx, self.kind, self.srv, self.model = rig, idx, kind, srv, model
        self.bucket = bucket
        self.rng = rng
        self.c = srv.client()
        self.ready = threading.Event()
        self.go = threading.Event()
        self.stop = threading.Event()
        self.killed = None  # set by the main thread just before SIGKILL
        self.inflight = None
        self.setup_error = None
        self.state = {}

    def call(self, op, fn, **kw):
        """One request; Dead when the server is gone or the round is over."""
        if self.stop.is_set():
            raise Dead()
        self.inflight = op
        try:
            r = fn(**kw)
        except ClientError as e:
            self.inflight = None
            if self.killed is not None and self.killed.is_set():
                raise Dead()
            st = s3_error(e)
            self.rig.early_errors[f"{op} {st[0]} {st[1]}"] += 1
            raise
        except Exception:
            self.inflight = None
            raise Dead()
        self.inflight = None
        self.rig.ops_done[op] += 1
        return r

    def put(self, key, size, op="PutObject"):
        tag, body = self.rig.body(size, f"{key}")
        v = Version.of(tag.decode(), body)
        self.model.begin(key, v)
        r = self.call(op, self.c.put_object, Bucket=self.bucket, Key=key, Body=body)
        if r["ETag"].strip('"') != v.etag:
            self.rig.v.add("ack", f"PUT {key}: ETag {r['ETag']} for md5 {v.md5}")
        self.model.ack(key, v)

    def run(self):
        try:
            try:
                getattr(self, "setup_" + self.kind, lambda: None)()
            except Exception as e:  # noqa: BLE001
                self.setup_error = e
                return
            finally:
                self.ready.set()
            self.go.wait()
            step = getattr(self, "step_" + self.kind)
            while not self.stop.is_set():
                try:
                    step()
                except ClientError:
                    time.sleep(0.01)
        except Dead:
            return

    # put_small / put_large
    def step_put_small(self):
        key = f"s/{self.idx}/{self.rng.randrange(8)}"
        self.put(key, self.rng.choice([0, 1, 100, 4096, self.rng.randrange(64 << 10)]))

    def step_put_large(self):
        key = f"l/{self.idx}/{self.rng.randrange(3)}"
        self.put(key, self.rng.randrange(2 * MIB, 9 * MIB))

    # upload_part
    def setup_upload_part(self):
        up = self.rig.uploads.get(self.idx)
        if up is None:
            key = f"u/{self.idx}/{self.rng.randrange(1000)}"
            r = self.c.create_multipart_upload(Bucket=self.bucket, Key=key)
            up = self.rig.uploads[self.idx] = Upload(r["UploadId"], key)
        self.state["up"] = up

    def step_upload_part(self):
        up = self.state["up"]
        n = self.rng.randrange(1, 4)
        size = 5 * MIB if self.rng.random() < 0.6 else 5 * MIB + self.rng.randrange(1, MIB)
        _, body = self.rig.body(size, f"{up.key}:p{n}")
        up.inflight[n].append(body)
        r = self.call("UploadPart", self.c.upload_part, Bucket=self.bucket, Key=up.key, UploadId=up.id,
                      PartNumber=n, Body=body)
        if r["ETag"].strip('"') != md5hex(body):
            self.rig.v.add("ack", f"UploadPart {up.key} {n}: ETag {r['ETag']} for {md5hex(body)}")
        up.acked[n] = body
        up.inflight[n] = []

    # complete
    def setup_complete(self):
        todo = []
        for j, shape in enumerate(["uneven", "even"]):
            key = f"m/{self.idx}/{j}"
            # even: parts end to end in the upload's shared file, completed by a link;
            # uneven: part 2 is longer than the stride and gets its own file, so Complete copies.
            r = self.rng.randrange(1, 64 << 10)
            sizes = [5 * MIB, MIB + r] if shape == "even" else [5 * MIB, 5 * MIB + r, (64 << 10) + r]
            uid = self.c.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            parts = []
            for n, size in enumerate(sizes, 1):
                _, body = self.rig.body(size, f"{key}:p{n}")
                self.c.upload_part(Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=n, Body=body)
                parts.append(body)
            v = Version.of(f"{key}:mp-{shape}", b"".join(parts), multipart_etag(parts))
            todo.append((key, uid, parts, v))
        self.state["todo"] = todo
        self.rig.pending_completes.extend(todo)

    def step_complete(self):
        if not self.state["todo"]:
            self.stop.wait(0.05)
            return
        key, uid, parts, v = self.state["todo"].pop(0)
        self.model.begin(key, v)
        t0 = time.monotonic()
        r = self.call("CompleteMultipartUpload", self.c.complete_multipart_upload, Bucket=self.bucket,
                      Key=key, UploadId=uid, MultipartUpload={"Parts": [
                          {"PartNumber": n, "ETag": f'"{md5hex(p)}"'} for n, p in enumerate(parts, 1)]})
        if r["ETag"].strip('"') != v.etag:
            self.rig.v.add("ack", f"Complete {key}: ETag {r['ETag']}, expected {v.etag}")
        self.rig.complete_times.append(time.monotonic() - t0)
        self.model.ack(key, v)
        self.rig.completed.add(uid)

    # copy
    def setup_copy(self):
        for i, size in enumerate([1024, 6 * MIB]):
            key = f"cs/{self.idx}/{i}"
            if self.model.acked.get(key) is None:
                self.put(key, size)

    def step_copy(self):
        src = f"cs/{self.idx}/{self.rng.randrange(2)}"
        dst = f"c/{self.idx}/{self.rng.randrange(4)}"
        sv = self.model.acked[src]
        v = Version(f"copy of {sv.label}", sv.md5, sv.size, sv.etag)
        self.model.begin(dst, v)
        r = self.call("CopyObject", self.c.copy_object, Bucket=self.bucket, Key=dst,
                      CopySource={"Bucket": self.bucket, "Key": src})
        if r["CopyObjectResult"]["ETag"].strip('"') != sv.etag:
            self.rig.v.add("ack", f"Copy {src}->{dst}: ETag {r['CopyObjectResult']['ETag']}, source {sv.etag}")
        self.model.ack(dst, v)

    # delete_objects
    def dkeys(self):
        return [f"d/{self.idx}/{i:02d}" for i in range(24)]

    def setup_delete_objects(self):
        for key in self.dkeys():
            if self.model.acked.get(key) is None:
                self.put(key, self.rng.randrange(10, 3000))

    def step_delete_objects(self):
        present = [k for k in self.dkeys() if self.model.acked.get(k) is not None]
        if len(present) < 6:
            for k in self.rng.sample([k for k in self.dkeys() if k not in present], 4):
                self.put(k, self.rng.randrange(10, 3000))
            return
        batch = self.rng.sample(present, self.rng.randrange(3, len(present) + 1))
        for k in batch:
            self.model.begin(k, None)
        r = self.call("DeleteObjects", self.c.delete_objects, Bucket=self.bucket,
                      Delete={"Objects": [{"Key": k} for k in batch]})
        for d in r.get("Deleted", []):
            self.model.ack(d["Key"], None)
        for e in r.get("Errors", []):
            self.rig.early_errors[f"DeleteObjects entry {e.get('Code')}"] += 1

    # create_abort: CreateMultipartUpload, a part, AbortMultipartUpload
    def step_create_abort(self):
        key = f"a/{self.idx}"
        r = self.call("CreateMultipartUpload", self.c.create_multipart_upload, Bucket=self.bucket, Key=key)
        uid = r["UploadId"]
        self.rig.aborting.add(uid)
        size = self.rng.choice([5 * MIB, 100 << 10])
        _, body = self.rig.body(size, f"{key}:p1")
        self.call("UploadPart", self.c.upload_part, Bucket=self.bucket, Key=key, UploadId=uid,
                  PartNumber=1, Body=body)
        self.call("AbortMultipartUpload", self.c.abort_multipart_upload, Bucket=self.bucket, Key=key,
                  UploadId=uid)
        self.rig.aborting.discard(uid)

    # writeback (through the gateway)
    def step_writeback(self):
        key = f"g/{self.idx}/{self.rng.randrange(6)}"
        if self.rng.random() < 0.15 and self.model.acked.get(key) is not None:
            self.model.begin(key, None)
            self.call("DeleteObject", self.c.delete_object, Bucket=self.bucket, Key=key)
            self.model.ack(key, None)
        else:
            size = self.rng.choice([10, 4096, 70000, self.rng.randrange(MIB, 3 * MIB)])
            self.put(key, size, op="PutObject(gateway)")


# ---------------------------------------------------------------------------------------------
# Rounds


def dirty_records(cache_dir):
    n = 0
    meta = cache_dir / "vfsMeta"
    for dirpath, _, files in os.walk(meta):
        for f in files:
            try:
                if json.loads(Path(dirpath, f).read_text()).get("Dirty"):
                    n += 1
            except (OSError, ValueError):
                pass
    return n


def run_round(rig, rnd, kind):
    rng = random.Random(rig.args.seed * 100003 + rnd)
    gateway = kind == "writeback"
    if gateway:
        srv = rig.gw or rig.start_gateway()
        model, bucket = rig.gw_model, GW_BUCKET
    else:
        srv = rig.srv or rig.start_local()
        model, bucket = rig.model, BUCKET
    rig.pending_completes = []
    rig.completed = set()
    workers = [Worker(rig, i, kind, srv, model, bucket, random.Random(rng.random())) for i in range(THREADS)]
    killed = threading.Event()
    for w in workers:
        w.killed = killed
        w.start()
    for w in workers:
        if not w.ready.wait(300):
            rig.v.add(f"round {rnd}", f"{kind}: setup did not finish in 300 s")
    errs = [w.setup_error for w in workers if w.setup_error]
    if errs:
        rig.v.add(f"round {rnd}", f"{kind}: setup failed: {errs[0]!r}")
    lo, hi = DELAY[kind]
    if kind == "complete" and rig.complete_times:
        # Kill within the time the completes of this round take (2 per worker).
        hi = 2.5 * sorted(rig.complete_times)[len(rig.complete_times) // 2]
    delay = rng.uniform(lo, hi)
    for w in workers:
        w.go.set()
    time.sleep(delay)
    killed.set()
    inflight = [w.inflight for w in workers if w.inflight]
    srv.proc.kill()
    srv.proc.wait()
    for w in workers:
        w.stop.set()
    for w in workers:
        w.join(60)
        if w.is_alive():
            rig.v.add(f"round {rnd}", f"worker {w.idx} did not stop after the kill")
    srv.kill()  # closes the log
    rig.check_dead_log(srv, f"round {rnd} {kind}")
    rig.rounds[kind] += 1
    for op in inflight:
        rig.kills_inflight[op] += 1
    if not inflight:
        rig.kills_inflight["(between requests)"] += 1
    where = f"round {rnd} {kind}"
    left = find_temps(rig.cache_dir) + find_temps(rig.spool_dir) if gateway else find_temps(rig.data)
    rig.temps_at_kill += len(left)
    if gateway:
        rig.dirty_at_kill.append(dirty_records(rig.cache_dir))
        srv = rig.start_gateway()
        rig.check_temps([rig.cache_dir, rig.spool_dir, rig.up_dir], where)
        # The killed gateway's private socket folder is swept by the next start; only the
        # running process's own is left.
        private = [f for f in files_in(rig.spool_dir) if f.startswith("s3serve-")]
        if len(private) > 1:
            rig.v.add(where, f"private socket folders of killed processes left: {private}")
        else:
            rig.checks["private socket folders of killed processes swept"] += 1
        tmp_items = files_in(rig.cache_dir / "s3serve" / ":s3" / "tmp")
        if tmp_items:
            rig.v.add(where, f"cache tmp/ not emptied at start-up: {tmp_items[:5]}")
        rig.check_objects(srv, model, bucket, where)
        check_upstream(rig, srv, where)
    else:
        srv = rig.start_local()
        rig.check_temps([rig.data], where)
        spool = [f for f in files_in(rig.data / ".s3serve" / "spool")]
        if spool:
            rig.v.add(where, f"spool files left: {spool[:5]}")
        # Completes cut short: the upload either finished or can be completed now.
        for key, uid, parts, v in rig.pending_completes:
            if uid in rig.completed:
                continue
            check_cut_complete(rig, srv, key, uid, parts, v, where)
        rig.check_objects(srv, model, bucket, where)
        rig.check_uploads(srv, where)
    return inflight, delay


def check_cut_complete(rig, srv, key, uid, parts, v, where):
    c = srv.client()
    try:
        c.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)
    except ClientError as e:
        if s3_error(e)[1] == "NoSuchUpload":
            # Finished before the kill: the object must be the new version.
            rig.model.inflight[key] = [v]
            rig.model.acked[key] = v  # anything else is a lost acknowledged-by-completion write
            rig.checks["cut Complete: had finished"] += 1
            return
        rig.v.add(where, f"ListParts of cut upload {uid}: {s3_error(e)}")
        return
    try:
        t0 = time.monotonic()
        r = c.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": n, "ETag": f'"{md5hex(p)}"'} for n, p in enumerate(parts, 1)]})
        rig.complete_times.append(time.monotonic() - t0)
    except ClientError as e:
        rig.v.add(where, f"Complete again of cut upload {uid} failed: {s3_error(e)}")
        return
    if r["ETag"].strip('"') != v.etag:
        rig.v.add(where, f"Complete again of {uid}: ETag {r['ETag']}, expected {v.etag}")
    rig.model.ack(key, v)
    rig.checks["cut Complete: completes again"] += 1


def check_upstream(rig, gw, where):
    """Whatever the gateway shows must reach the upstream, and nothing else stay there."""
    up = rig.upstream.client(ak=UPSTREAM_AK, sk=UPSTREAM_SK)

    def upstream_state():
        out = {}
        r = up.list_objects_v2(Bucket=GW_BUCKET)
        for o in r.get("Contents", []):
            out[o["Key"]] = o["ETag"].strip('"')
        return out

    want = {k: v for k, v in rig.gw_model.acked.items() if v is not None}
    t0 = time.monotonic()
    target = {k: v.etag for k, v in want.items()}
    caught_up = poll(lambda: upstream_state() == target, timeout=180, interval=0.25)
    if not caught_up:
        state = upstream_state()
        diff = {k: (state.get(k), want[k].etag if k in want else None)
                for k in set(state) | set(want) if state.get(k) != (want[k].etag if k in want else None)}
        rig.v.add(where, f"upstream did not converge to the gateway's objects within 180 s "
                         f"(key: (upstream, gateway)): {diff}; dirty records: {dirty_records(rig.cache_dir)}")
        return
    # Bytes too, not only ETags.
    for k, v in want.items():
        body = up.get_object(Bucket=GW_BUCKET, Key=k)["Body"].read()
        if md5hex(body) != v.md5:
            rig.v.add(where, f"upstream {k}: bytes md5 {md5hex(body)}, gateway acknowledged {v!r}")
            return
    rig.checks["gateway: writes reach the upstream after restart"] += 1
    rig.notes.append(time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=32)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k] or KINDS
    for k in kinds:
        if k not in KINDS:
            sys.exit(f"unknown kind {k}; kinds: {', '.join(KINDS)}")
    work = Path(tempfile.mkdtemp(prefix="s3serve-crash-"))
    rig = Rig(args, work)
    print(f"crash.py: seed {args.seed}, {args.rounds} rounds, kinds {','.join(kinds)}, "
          f"binary {conftest.S3SERVE_BIN}, work dir {work}", flush=True)
    started = time.monotonic()
    order = []
    try:
        for rnd in range(1, args.rounds + 1):
            if not order:
                order = list(kinds)
                rig.rng.shuffle(order)
            kind = order.pop()
            t0 = time.monotonic()
            before = len(rig.v.items)
            inflight, delay = run_round(rig, rnd, kind)
            status = "ok" if len(rig.v.items) == before else "VIOLATION"
            print(f"round {rnd:4d} {kind:15s} kill after {delay * 1000:5.0f} ms, in flight: "
                  f"{','.join(inflight) or '-':40s} {time.monotonic() - t0:5.1f}s {status}", flush=True)
        # Last, every object's bytes, the large untouched ones included.
        if rig.srv is not None:
            rig.check_objects(rig.srv, rig.model, BUCKET, "final full pass", full=True)
        if rig.gw is not None:
            rig.check_objects(rig.gw, rig.gw_model, GW_BUCKET, "final full pass (gateway)", full=True)
    finally:
        for s in (rig.srv, rig.gw, rig.upstream):
            if s is not None and s.proc.poll() is None:
                s.stop()
        for s in (rig.srv, rig.gw, rig.upstream):
            if s is not None:
                for p in panics([s]):
                    rig.v.add("final", f"panic logged: {p}")
    elapsed = time.monotonic() - started
    print()
    print(table([[k, rig.rounds[k]] for k in KINDS if rig.rounds[k]] + [["total", sum(rig.rounds.values())]],
                ["round kind", "rounds (one SIGKILL each)"]))
    print()
    print(table(sorted([[k, v] for k, v in rig.kills_inflight.items()]),
                ["request in flight at the kill", "kills"]))
    print()
    print(table(sorted([[k, v] for k, v in rig.ops_done.items()]), ["request acknowledged", "count"]))
    print()
    print(table(sorted([[k, v] for k, v in rig.checks.items()]), ["check held", "times"]))
    if rig.dirty_at_kill:
        print(f"\ngateway: dirty (not yet uploaded) records at the kills: {rig.dirty_at_kill} "
              f"(total {sum(rig.dirty_at_kill)})")
    if rig.notes:
        print(f"gateway: upstream caught up {min(rig.notes):.1f}-{max(rig.notes):.1f} s after restart")
    print(f"temporaries found after the kills (before restart): {rig.temps_at_kill}")
    if rig.sweep_times:
        print(f"start-up sweep: temporaries gone within {max(rig.sweep_times):.2f} s of start")
    if rig.early_errors:
        print("\nerror answers before any kill (not violations by themselves):")
        for k, v in sorted(rig.early_errors.items()):
            print(f"  {k}: {v}")
    print(f"\n{sum(rig.rounds.values())} rounds in {elapsed:.1f} s; "
          f"{len(rig.v.items)} violations")
    rig.v.finish(work, args.keep)


if __name__ == "__main__":
    main()
