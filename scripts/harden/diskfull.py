#!/usr/bin/env python3
"""Disk-full hardening: serve a 16 MiB tmpfs and make every kind of write run out of space.

Mounts `tmpfs -o size=16m` (needs root; unmounted in a `finally`), serves it with s3serve and
makes these run out of space, one scenario at a time:

  put_declared_too_big     PUT whose Content-Length exceeds the free space
  put_chunked_runs_out     PUT with Transfer-Encoding: chunked (no length) that runs out midway
  put_concurrent_runs_out  two PUTs that each fit but not together
  part_declared_too_big    UploadPart larger than the free space
  parts_fill_the_disk      UploadPart of 5 MiB parts until one does not fit
  complete_copy_runs_out   CompleteMultipartUpload of uneven parts (joined by copying) that
                           does not fit, over an existing object of that key
  complete_link_when_full  CompleteMultipartUpload of parts laid end to end (no copy) on a full
                           disk (informational: it should need no room)
  copy_runs_out            CopyObject of a 5 MiB object that does not fit, over an existing key

After each failure it checks: the answer is an S3 XML error (status and code recorded, and
it must be 507 InsufficientStorage, or 503 SlowDown for a full cache; any other answer is a
violation), nothing is left behind (no `.s3serve-tmp-*` anywhere, spool empty, the
free space back to what it was before the request, the key's old object intact, the
upload's parts as they were), GET of the existing objects is exact and listings work, and
after deleting the filler objects the same write succeeds with the right bytes.

Then the same for a gateway's cache (`--vfs-cache-mode writes --vfs-write-back 1h`, the
cache dir on its own 16 MiB tmpfs, the upstream a second s3serve on ordinary disk): PUTs
until the cache is full, a PUT larger than the cache, UploadPart into a full cache; each
must be refused (README: 503 SlowDown), leave the cache's tmp/ empty and its free space as
it was, keep serving reads and listings, and work again once objects are deleted.

Run (about 20-40 s):
    .venv/bin/python scripts/harden/diskfull.py
Options: --seed N (default 1; fixes the bodies), --keep (keep the work dir; the mounts are
always unmounted). There is no long version: every scenario is deterministic. Exits 1 on
any violation (`VIOLATION [scenario] what`), 2 if the tmpfs cannot be mounted (there is no
test seam for ENOSPC in the server to fall back to).
"""

import argparse
import http.client
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    AK, SK, UPSTREAM_AK, UPSTREAM_SK, ClientError, Server, Violations, files_in, find_temps, md5hex,
    multipart_etag, panics, poll, table,
)
import conftest  # noqa: E402

MIB = 1 << 20
BUCKET = "full"


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def mount_tmpfs(d, size="16m"):
    d.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"mount exited {r.returncode}"
    return None


def umount(d):
    for _ in range(20):
        r = subprocess.run(["umount", str(d)], capture_output=True, text=True)
        if r.returncode == 0:
            return True
        time.sleep(0.25)
    print(f"WARNING: could not unmount {d}: {r.stderr.strip()}")
    return False


class Answer:
    def __init__(self, status, body, error=None):
        self.status, self.body, self.error = status, body, error
        self.code = self.message = None
        if body:
            try:
                root = ET.fromstring(body)
                if root.tag.split("}")[-1] == "Error":
                    self.code = root.findtext("Code")
                    self.message = root.findtext("Message")
            except ET.ParseError:
                pass

    def __repr__(self):
        if self.status is None:
            return f"<no answer: {self.error}>"
        return f"<{self.status} {self.code}: {self.message}>"


def raw(srv, method, path, query=(), headers=None, body=b"", chunked=False, ak=AK, sk=SK):
    """One signed request with http.client; the body is sent in pieces (a server that refuses
    early may stop reading), then the answer is read. UNSIGNED-PAYLOAD."""
    pairs = list(query)
    target = path + ("?" + conftest._wire_query(pairs) if pairs else "")
    host = f"{srv.host}:{srv.port}"
    hdrs = dict(headers or {})
    if chunked:
        hdrs["transfer-encoding"] = "chunked"
    elif body or method in ("PUT", "POST"):
        hdrs["content-length"] = str(len(body))
    signed = {k: v for k, v in hdrs.items() if k not in ("transfer-encoding", "content-length")}
    h = conftest.sign_headers(method, path, pairs, signed, "UNSIGNED-PAYLOAD", ak, sk, host=host)
    h.update({k: v for k, v in hdrs.items() if k in ("transfer-encoding", "content-length")})
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    send_error = None
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        step = 256 << 10
        try:
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except OSError as e:
            send_error = e
        try:
            resp = conn.getresponse()
            return Answer(resp.status, resp.read())
        except (OSError, http.client.HTTPException) as e:
            return Answer(None, b"", error=f"{send_error or ''} {e!r}")
    finally:
        conn.close()


class Rig:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.v = Violations()
        self.rows = []  # scenario, request, status, code, sensible, left behind
        self.held = []
        self.pool = random.Random(args.seed).randbytes(24 * MIB)
        self.n = 0

    def body(self, size):
        self.n += 1
        head = f"body#{self.n};".encode()
        off = random.Random(self.n).randrange(0, len(self.pool) - size)
        return (head + self.pool[off:off + size])[:size]

    def ok(self, scenario, what):
        self.held.append((scenario, what))

    def judge(self, scenario, request, a, expect_codes=("InsufficientStorage",), gateway=False):
        """Record the failed answer and check it is a clear S3 error."""
        sensible = "-"
        if a.status is None:
            self.v.add(scenario, f"{request}: no HTTP answer ({a.error})")
        elif a.status < 400:
            self.v.add(scenario, f"{request}: succeeded ({a.status}) although it cannot fit")
        elif a.code is None:
            self.v.add(scenario, f"{request}: {a.status} without an S3 XML error body: {a.body[:200]!r}")
        else:
            if a.code in expect_codes:
                sensible = "yes"
            elif a.status >= 500:
                sensible = f"NO: expected {'/'.join(expect_codes)}"
                self.v.add(scenario, f"{request}: {a.status} {a.code} ({a.message}) does not say the "
                                     f"storage is full (expected {'/'.join(expect_codes)})")
            else:
                sensible = "NO: a 4xx blames the client"
                self.v.add(scenario, f"{request}: {a.status} {a.code} ({a.message}) blames the client "
                                     f"for a full disk")
        self.rows.append([scenario, request, a.status, a.code, sensible, (a.message or "")[:70]])
        return a

    # ---- checks shared by scenarios
    def no_leftovers(self, scenario, root, free_before, spool=None, slack=0):
        """`slack`: bytes the request may legitimately keep (an upload's 4 KiB stride record)."""
        temps = poll(lambda: not find_temps(root), timeout=10) or find_temps(root)
        if temps is not True and temps:
            self.v.add(scenario, f"temporaries left: {temps[:5]}")
        else:
            self.ok(scenario, "no temporaries left")
        if spool is not None:
            left = poll(lambda: not files_in(spool), timeout=10) or files_in(spool)
            if left is not True and left:
                self.v.add(scenario, f"spool files left in {spool}: {left[:5]}")
        back = poll(lambda: free_bytes(root) >= free_before - slack, timeout=10)
        if not back:
            recent = []
            for dirpath, _, files in os.walk(root):
                for f in files:
                    p = Path(dirpath, f)
                    st = p.stat()
                    if time.time() - st.st_mtime < 15:
                        recent.append(f"{p.relative_to(root)} ({st.st_blocks * 512} bytes on disk)")
            self.v.add(scenario, f"free space not back: {free_before} before, {free_bytes(root)} after "
                                 f"({free_before - free_bytes(root)} bytes lost); files written in the last "
                                 f"15 s: {recent}")
        else:
            self.ok(scenario, "free space back to what it was")

    def reads_work(self, scenario, c, objects, bucket=BUCKET):
        for key, body in objects.items():
            try:
                got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as e:
                self.v.add(scenario, f"GET {key} failed: {e}")
                continue
            if got != body:
                self.v.add(scenario, f"GET {key}: {len(got)} bytes md5 {md5hex(got)}, expected {len(body)} "
                                     f"md5 {md5hex(body)}")
        try:
            listed = set()
            token = None
            while True:
                kw = {"Bucket": bucket}
                if token:
                    kw["ContinuationToken"] = token
                r = c.list_objects_v2(**kw)
                listed |= {o["Key"] for o in r.get("Contents", [])}
                if not r["IsTruncated"]:
                    break
                token = r["NextContinuationToken"]
            missing = set(objects) - listed
            if missing:
                self.v.add(scenario, f"listing lacks {sorted(missing)}")
        except ClientError as e:
            self.v.add(scenario, f"ListObjectsV2 failed: {e}")
            return
        self.ok(scenario, f"GET of {len(objects)} objects exact, listing works")


# ---------------------------------------------------------------------------------------------
# The local server over a full tmpfs


def local_scenarios(rig, mnt):
    srv = Server(mnt, workdir=rig.work)
    rig.servers = [srv]
    c = srv.client()
    c.create_bucket(Bucket=BUCKET)
    spool = mnt / ".s3serve" / "spool"
    keep = {f"keep/{i}": rig.body(s) for i, s in enumerate([0, 1000, 300 << 10, MIB + 5])}
    for k, b in keep.items():
        c.put_object(Bucket=BUCKET, Key=k, Body=b)
    objects = dict(keep)
    fillers = []

    def fill_to(free_target):
        """PUT filler objects until about free_target bytes are free."""
        i = 0
        while free_bytes(mnt) > free_target + (64 << 10):
            want = min(2 * MIB, free_bytes(mnt) - free_target)
            if want <= 0:
                break
            key = f"filler/{len(fillers)}-{i}"
            i += 1
            try:
                c.put_object(Bucket=BUCKET, Key=key, Body=rig.body(want))
            except ClientError:
                break
            fillers.append(key)

    def unfill():
        while fillers:
            c.delete_object(Bucket=BUCKET, Key=fillers.pop())

    def after(scenario, free_before):
        rig.no_leftovers(scenario, mnt, free_before, spool)
        rig.reads_work(scenario, c, objects)

    # 1. declared too big
    sc = "put_declared_too_big"
    free0 = free_bytes(mnt)
    big = rig.body(20 * MIB)
    a = rig.judge(sc, "PUT 20 MiB (Content-Length)", raw(srv, "PUT", f"/{BUCKET}/big", body=big))
    after(sc, free0)
    if "big" in set(k for k in objects):
        pass
    try:
        c.head_object(Bucket=BUCKET, Key="big")
        rig.v.add(sc, "the refused object exists")
    except ClientError:
        rig.ok(sc, "no object made")

    # 2. chunked, no length, runs out midway
    sc = "put_chunked_runs_out"
    free0 = free_bytes(mnt)
    a = rig.judge(sc, "PUT 20 MiB (chunked, no length)",
                  raw(srv, "PUT", f"/{BUCKET}/chunked", body=big, chunked=True))
    after(sc, free0)
    try:
        c.head_object(Bucket=BUCKET, Key="chunked")
        rig.v.add(sc, "the refused object exists")
    except ClientError:
        rig.ok(sc, "no object made")
    # and it works once it fits
    small = rig.body(3 * MIB)
    a = raw(srv, "PUT", f"/{BUCKET}/chunked", body=small, chunked=True)
    if a.status == 200:
        objects["chunked"] = small
        rig.ok(sc, "a chunked PUT that fits works")
    else:
        rig.v.add(sc, f"a chunked PUT of 3 MiB that fits failed: {a}")

    # 3. two PUTs that each fit but not together
    sc = "put_concurrent_runs_out"
    fill_to(7 * MIB)
    free0 = free_bytes(mnt)
    bodies = [rig.body(int(4.5 * MIB)), rig.body(int(4.5 * MIB))]
    answers = [None, None]
    old = rig.body(2000)
    c.put_object(Bucket=BUCKET, Key="conc/0", Body=old)
    c.put_object(Bucket=BUCKET, Key="conc/1", Body=old)
    free0 = free_bytes(mnt)

    def send(i):
        answers[i] = raw(srv, "PUT", f"/{BUCKET}/conc/{i}", body=bodies[i])
    ts = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    failed = [i for i in range(2) if answers[i].status != 200]
    for i in range(2):
        if i in failed:
            rig.judge(sc, f"PUT 4.5 MiB #{i + 1} of 2 at once ({free0 >> 10} KiB free)", answers[i])
        got = c.get_object(Bucket=BUCKET, Key=f"conc/{i}")["Body"].read()
        exp = old if i in failed else bodies[i]
        if got != exp:
            rig.v.add(sc, f"conc/{i}: {len(got)} bytes, expected {'the old' if i in failed else 'the new'} "
                          f"{len(exp)}")
        objects[f"conc/{i}"] = exp
    if not failed:
        rig.rows.append([sc, "two PUTs of 4.5 MiB", "200/200", "-", "both fit", ""])
    spent = sum(len(bodies[i]) - len(old) for i in range(2) if i not in failed)
    rig.no_leftovers(sc, mnt, free0 - spent - (64 << 10), spool)
    rig.reads_work(sc, c, objects)
    for i in range(2):
        c.delete_object(Bucket=BUCKET, Key=f"conc/{i}")
        objects.pop(f"conc/{i}")
    unfill()

    # 4. a part larger than the free space
    sc = "part_declared_too_big"
    uid = c.create_multipart_upload(Bucket=BUCKET, Key="mp/big")["UploadId"]
    free0 = free_bytes(mnt)
    rig.judge(sc, "UploadPart 20 MiB", raw(srv, "PUT", f"/{BUCKET}/mp/big", body=big,
                                           query=[("partNumber", "1"), ("uploadId", uid)]))
    after(sc, free0)
    parts = c.list_parts(Bucket=BUCKET, Key="mp/big", UploadId=uid).get("Parts", [])
    if parts:
        rig.v.add(sc, f"the refused part is listed: {parts}")

    # 5. parts until the disk is full
    sc = "parts_fill_the_disk"
    sent = {}
    n = 0
    while n < 10:
        n += 1
        body = rig.body(5 * MIB)
        free0 = free_bytes(mnt)
        a = raw(srv, "PUT", f"/{BUCKET}/mp/big", body=body, query=[("partNumber", str(n)), ("uploadId", uid)])
        if a.status == 200:
            sent[n] = body
            continue
        rig.judge(sc, f"UploadPart 5 MiB #{n} ({free0 >> 10} KiB free)", a)
        after(sc, free0)
        break
    else:
        rig.v.add(sc, "10 parts of 5 MiB fit in 16 MiB?")
    listed = {p["PartNumber"]: p["ETag"].strip('"')
              for p in c.list_parts(Bucket=BUCKET, Key="mp/big", UploadId=uid).get("Parts", [])}
    if listed != {k: md5hex(b) for k, b in sent.items()}:
        rig.v.add(sc, f"ListParts after the failure: {listed}, acknowledged {sorted(sent)}")
    else:
        rig.ok(sc, "ListParts shows exactly the acknowledged parts")
    # The upload holds its parts (and no more); aborting gives it all back.
    free_mid = free_bytes(mnt)
    c.abort_multipart_upload(Bucket=BUCKET, Key="mp/big", UploadId=uid)
    freed = free_bytes(mnt) - free_mid
    held = sum(len(b) for b in sent.values())
    if freed < held:
        rig.v.add(sc, f"abort freed {freed} bytes, the acknowledged parts hold {held}")
    elif freed > held + (256 << 10):
        rig.v.add(sc, f"abort freed {freed} bytes, more than the {held} the acknowledged parts hold: "
                      f"a failed part was leaked into the upload")
    else:
        rig.ok(sc, f"the upload held its parts and no more ({freed} bytes freed by abort)")

    # 6. Complete that must copy (uneven parts) and does not fit
    sc = "complete_copy_runs_out"
    old = rig.body(3000)
    c.put_object(Bucket=BUCKET, Key="mp/uneven", Body=old)
    objects["mp/uneven"] = old
    uid = c.create_multipart_upload(Bucket=BUCKET, Key="mp/uneven")["UploadId"]
    # Part 2 first (too small to fix the stride: a file of its own), then part 1 (in place):
    # not end to end in one file, so Complete joins them by copying.
    p2, p1 = rig.body(100 << 10), rig.body(5 * MIB + 1)
    c.upload_part(Bucket=BUCKET, Key="mp/uneven", UploadId=uid, PartNumber=2, Body=p2)
    c.upload_part(Bucket=BUCKET, Key="mp/uneven", UploadId=uid, PartNumber=1, Body=p1)
    fill_to(3 * MIB)
    free0 = free_bytes(mnt)
    done_xml = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{md5hex(p)}\"</ETag></Part>" for n, p in [(1, p1), (2, p2)])
        + "</CompleteMultipartUpload>").encode()
    rig.judge(sc, f"Complete of 5.1 MiB by copy ({free0 >> 10} KiB free)",
              raw(srv, "POST", f"/{BUCKET}/mp/uneven", body=done_xml, query=[("uploadId", uid)]))
    after(sc, free0)
    listed = {p["PartNumber"]: p["ETag"].strip('"')
              for p in c.list_parts(Bucket=BUCKET, Key="mp/uneven", UploadId=uid).get("Parts", [])}
    if listed != {1: md5hex(p1), 2: md5hex(p2)}:
        rig.v.add(sc, f"the upload's parts changed after the failed Complete: {listed}")
    else:
        rig.ok(sc, "upload intact after the failed Complete")
    unfill()
    a = raw(srv, "POST", f"/{BUCKET}/mp/uneven", body=done_xml, query=[("uploadId", uid)])
    got = c.get_object(Bucket=BUCKET, Key="mp/uneven")
    data = got["Body"].read()
    if a.status != 200 or data != p1 + p2 or got["ETag"].strip('"') != multipart_etag([p1, p2]):
        rig.v.add(sc, f"Complete after freeing space: {a}, {len(data)} bytes, ETag {got['ETag']}")
    else:
        objects["mp/uneven"] = p1 + p2
        rig.ok(sc, "Complete works once there is room, bytes and ETag right")
    c.delete_object(Bucket=BUCKET, Key="mp/uneven")
    objects.pop("mp/uneven", None)

    # 7. Complete by link on a full disk (informational)
    sc = "complete_link_when_full"
    uid = c.create_multipart_upload(Bucket=BUCKET, Key="mp/even")["UploadId"]
    q1, q2 = rig.body(5 * MIB), rig.body(200 << 10)
    c.upload_part(Bucket=BUCKET, Key="mp/even", UploadId=uid, PartNumber=1, Body=q1)
    c.upload_part(Bucket=BUCKET, Key="mp/even", UploadId=uid, PartNumber=2, Body=q2)
    fill_to(256 << 10)
    free0 = free_bytes(mnt)
    xml = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{md5hex(p)}\"</ETag></Part>" for n, p in [(1, q1), (2, q2)])
        + "</CompleteMultipartUpload>").encode()
    a = raw(srv, "POST", f"/{BUCKET}/mp/even", body=xml, query=[("uploadId", uid)])
    if a.status == 200:
        data = c.get_object(Bucket=BUCKET, Key="mp/even")["Body"].read()
        if data != q1 + q2:
            rig.v.add(sc, f"linked Complete on a full disk gave {len(data)} wrong bytes")
        rig.rows.append([sc, f"Complete 5.2 MiB by link ({free0 >> 10} KiB free)", 200, "-", "works, no copy", ""])
        rig.ok(sc, "Complete by link needs no room")
    else:
        rig.judge(sc, f"Complete 5.2 MiB by link ({free0 >> 10} KiB free)", a)
        after(sc, free0)
    c.delete_object(Bucket=BUCKET, Key="mp/even")
    unfill()

    # 8. CopyObject that does not fit
    sc = "copy_runs_out"
    src = rig.body(5 * MIB)
    c.put_object(Bucket=BUCKET, Key="copy/src", Body=src)
    objects["copy/src"] = src
    old = rig.body(1234)
    c.put_object(Bucket=BUCKET, Key="copy/dst", Body=old)
    objects["copy/dst"] = old
    fill_to(2 * MIB)
    free0 = free_bytes(mnt)
    rig.judge(sc, f"CopyObject 5 MiB ({free0 >> 10} KiB free)",
              raw(srv, "PUT", f"/{BUCKET}/copy/dst", headers={"x-amz-copy-source": f"/{BUCKET}/copy/src"}))
    after(sc, free0)
    unfill()
    try:
        c.copy_object(Bucket=BUCKET, Key="copy/dst", CopySource={"Bucket": BUCKET, "Key": "copy/src"})
        objects["copy/dst"] = src
        rig.reads_work(sc, c, objects)
        rig.ok(sc, "CopyObject works once there is room")
    except ClientError as e:
        rig.v.add(sc, f"CopyObject after freeing space failed: {e}")

    # And plain writes work again after deleting.
    sc = "after_deletes"
    for k in [k for k in objects if k.startswith(("copy/", "mp/"))]:
        c.delete_object(Bucket=BUCKET, Key=k)
        objects.pop(k)
    b = rig.body(8 * MIB)
    try:
        c.put_object(Bucket=BUCKET, Key="again", Body=b)
        objects["again"] = b
        rig.reads_work(sc, c, objects)
        rig.ok(sc, "an 8 MiB PUT works after deleting")
    except ClientError as e:
        rig.v.add(sc, f"PUT 8 MiB after deleting failed: {e}")
    srv.stop()
    for p in panics([srv]):
        rig.v.add("local", f"panic: {p}")
    temps = find_temps(mnt)
    if temps:
        rig.v.add("local", f"temporaries after stopping: {temps}")


# ---------------------------------------------------------------------------------------------
# A gateway whose cache is full


def gateway_scenarios(rig, cmnt):
    up_dir = rig.work / "upstream"
    (up_dir / BUCKET).mkdir(parents=True)
    upstream = Server(up_dir, auth=((UPSTREAM_AK, UPSTREAM_SK),), workdir=rig.work)
    rig.servers.append(upstream)
    spool = rig.work / "gw-tmp"
    spool.mkdir()
    remote = (f":s3,provider=Other,endpoint='{upstream.url}',"
              f"access_key_id={UPSTREAM_AK},secret_access_key={UPSTREAM_SK}:")
    gw = Server(remote, workdir=rig.work, env={"TMPDIR": str(spool)},
                flags=["--vfs-cache-mode", "writes", "--cache-dir", str(cmnt), "--vfs-write-back", "1h"])
    rig.servers.append(gw)
    try:
        c = gw.client()
        objects = {}
        sc = "cache_fills_up"
        tmp = cmnt / "s3serve" / ":s3" / "tmp"
        n = 0
        a = None
        while n < 12:
            n += 1
            body = rig.body(3 * MIB)
            free0 = free_bytes(cmnt)
            a = raw(gw, "PUT", f"/{BUCKET}/g/{n}", body=body)
            if a.status == 200:
                objects[f"g/{n}"] = body
                continue
            rig.judge(sc, f"PUT 3 MiB #{n} into the cache ({free0 >> 10} KiB free)", a,
                      expect_codes=("SlowDown", "InsufficientStorage"))
            rig.no_leftovers(sc, cmnt, free0)
            if files_in(tmp):
                rig.v.add(sc, f"cache tmp/ holds {files_in(tmp)}")
            rig.reads_work(sc, c, objects)
            break
        else:
            rig.v.add(sc, "12 PUTs of 3 MiB fit in a 16 MiB cache?")

        sc = "cache_put_too_big"
        free0 = free_bytes(cmnt)
        rig.judge(sc, "PUT 20 MiB into the cache", raw(gw, "PUT", f"/{BUCKET}/g/big", body=rig.body(20 * MIB)),
                  expect_codes=("SlowDown", "InsufficientStorage"))
        rig.no_leftovers(sc, cmnt, free0)
        # $TMPDIR also holds the live process's private socket folder, s3serve-<pid>-<token>.
        private = f"s3serve-{gw.proc.pid}-"
        left = poll(lambda: not [f for f in files_in(spool) if not f.startswith(private)], timeout=10)
        if not left:
            rig.v.add(sc, f"spool ($TMPDIR) holds {files_in(spool)}")
        else:
            rig.ok(sc, "spool ($TMPDIR) empty")
        rig.reads_work(sc, c, objects)

        sc = "cache_part_when_full"
        try:
            uid = c.create_multipart_upload(Bucket=BUCKET, Key="g/mp")["UploadId"]
            free0 = free_bytes(cmnt)
            rig.judge(sc, f"UploadPart 5 MiB into a full cache ({free0 >> 10} KiB free)",
                      raw(gw, "PUT", f"/{BUCKET}/g/mp", body=rig.body(5 * MIB),
                          query=[("partNumber", "1"), ("uploadId", uid)]),
                      expect_codes=("SlowDown", "InsufficientStorage"))
            # The refused part may fix the upload's stride record (one 4 KiB page), freed by abort.
            rig.no_leftovers(sc, cmnt, free0, slack=4096)
            rig.reads_work(sc, c, objects)
            c.abort_multipart_upload(Bucket=BUCKET, Key="g/mp", UploadId=uid)
        except ClientError as e:
            rig.rows.append([sc, "CreateMultipartUpload", e.response["ResponseMetadata"]["HTTPStatusCode"],
                             e.response.get("Error", {}).get("Code"), "-", ""])

        sc = "cache_after_deletes"
        for k in list(objects)[:2]:
            c.delete_object(Bucket=BUCKET, Key=k)
            objects.pop(k)
        body = rig.body(3 * MIB)
        a = raw(gw, "PUT", f"/{BUCKET}/g/again", body=body)
        if a.status != 200:
            rig.v.add(sc, f"PUT 3 MiB after deleting two cached objects: {a}")
        else:
            objects["g/again"] = body
            rig.ok(sc, "PUT works again after deleting")
        rig.reads_work(sc, c, objects)
    finally:
        gw.stop()
        upstream.stop()
    for p in panics([gw, upstream]):
        rig.v.add("gateway", f"panic: {p}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3serve-diskfull-"))
    rig = Rig(args, work)
    rig.servers = []
    started = time.monotonic()
    print(f"diskfull.py: seed {args.seed}, binary {conftest.S3SERVE_BIN}, work dir {work}", flush=True)
    mnt, cmnt = work / "mnt", work / "cache-mnt"
    mounted = []
    try:
        for d in (mnt, cmnt):
            why = mount_tmpfs(d)
            if why:
                print(f"cannot mount a tmpfs at {d}: {why}\n"
                      "s3serve has no test seam that fakes ENOSPC, so there is nothing to fall back to.")
                sys.exit(2)
            mounted.append(d)
        print(f"tmpfs 16 MiB at {mnt} (served) and {cmnt} (gateway cache); free {free_bytes(mnt)} bytes",
              flush=True)
        for scenarios, where in ((local_scenarios, mnt), (gateway_scenarios, cmnt)):
            try:
                scenarios(rig, where)
            finally:
                for s in rig.servers:
                    if s.proc.poll() is None:
                        s.kill()
    finally:
        for d in mounted:
            umount(d)
    print()
    print(table(rig.rows, ["scenario", "request that ran out of space", "status", "code", "sensible",
                           "message"]))
    print()
    counts = {}
    for sc, what in rig.held:
        counts.setdefault(sc, []).append(what)
    print(table([[sc, "; ".join(dict.fromkeys(w))] for sc, w in counts.items()], ["scenario", "held"]))
    print(f"\n{len(rig.rows)} out-of-space requests, {len(rig.held)} checks held, "
          f"{len(rig.v.items)} violations, {time.monotonic() - started:.1f} s")
    rig.v.finish(work, args.keep)


if __name__ == "__main__":
    main()
