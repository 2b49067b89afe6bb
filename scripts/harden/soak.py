#!/usr/bin/env python3
"""Soak test for s3serve: a mixed load for a long time, then a check that the server process's
memory, descriptors and threads came back to what they were early on, idle to idle.

What it does
  Starts one s3serve ($S3SERVE_BIN, default target/release/s3serve) with `--workers 4` over a fresh
  directory. --clients threads (own boto3 client each, seeded by --seed) run PUT, GET, HEAD,
  ListObjectsV2 (paged and with a delimiter), DELETE, DeleteObjects, CopyObject and multipart
  uploads (completed and aborted) over a bounded key space, small objects and larger ones (to
  --max-size). One more thread misbehaves on raw sockets: connections dropped mid-head,
  mid-body of a PUT and mid-download of a GET, and bad requests (garbage request line, bad
  signature, `..` key, unknown bucket, oversized head, wrong Content-MD5, malformed XML).

  Phases: warm load for the first minute (or the first 1/3 of a shorter run), then the load
  stops and the server is let settle: clients close their connections and we poll /proc until
  no TCP connection to the port is left, --settle-min (65 s) has passed (the server keeps its
  internal relay-to-worker connections, with their descriptors and threads, for about a
  minute after the clients leave) and descriptors/threads held still for --settle-stable
  (10 s); then the EARLY
  sample (RSS from /proc/PID/status VmRSS, descriptors = len(/proc/PID/fd), threads). Load
  runs again for the rest of --seconds, stops, settles the same way, and the END sample is
  taken. Samples (under load, every --sample-every seconds) are printed as they are taken.

Pass criteria (exit 1 otherwise)
  - descriptors and threads at the end equal the early idle values exactly;
  - RSS at the end <= early RSS + max(10%, 4 MiB). Why a tolerance: RSS is not only live
    objects. glibc malloc keeps freed memory in per-thread arenas and returns it to the system
    lazily and in page-sized pieces, so the same idle state can show a few MiB more or less
    depending on fragmentation; the listing page cache (up to 8 MiB) and directory cache are
    filled by the load and may hold different (bounded) contents at the two samples. A leak
    grows with the load and the length of the run: rerun longer and see it grow past this;
  - no server death or panic, no 5xx other than 503 SlowDown (shedding at a full queue is
    allowed and counted), every bad request answered 4xx, every GET body whole, no temporary
    files left in the tree after the final settle.

Run (from the repo root; S3SERVE_BIN defaults to target/release/s3serve):
  quick (CI):  .venv/bin/python scripts/harden/soak.py --seconds 60
  long:        .venv/bin/python scripts/harden/soak.py            (600 s)
"""

import argparse
import collections
import hashlib
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as rl  # noqa: E402
from _common import make_client, AK, SK  # noqa: E402
import conftest  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BUCKET = "soak"
MIB = 1 << 20
KEYS = [f"obj/{i:03d}" for i in range(60)] + [f"dir{i % 4}/sub{i % 3}/o{i}" for i in range(40)] + \
       [f"big/{i}" for i in range(6)]


class Soak:
    def __init__(self, args, server):
        self.args = args
        self.server = server
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = []
        self.samples = []
        self.stop = threading.Event()

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def error(self, msg):
        with self.lock:
            self.errors.append(msg)
        if len(self.errors) <= 20:
            print("ERROR:", msg, flush=True)

    def client_error(self, op, e):
        if isinstance(e, ClientError):
            st = e.response["ResponseMetadata"]["HTTPStatusCode"]
            code = e.response.get("Error", {}).get("Code")
            self.count(f"answer:{op}:{st}:{code}")
            if st == 503 and code == "SlowDown":
                return
            if st >= 500:
                self.error(f"{op}: {st} {code}: {e}")
            elif not (st == 404 and op in ("get", "head", "copy")):
                self.error(f"{op}: unexpected {st} {code}: {e}")
        else:
            self.count(f"answer:{op}:{type(e).__name__}")
            self.error(f"{op}: {type(e).__name__}: {e}")

    # ---- well-behaved clients ----------------------------------------------------------------

    def body(self, rng, key, big=False):
        size = rng.randint(1 * MIB, self.args.max_size) if big else rng.choice(
            [0, rng.randint(120, 2048), rng.randint(2048, 128 << 10)])
        return rl.make_body(rng, key, f"s{rng.getrandbits(40):x}", size)

    def client_loop(self, tid, phase):
        rng = random.Random(self.args.seed * 7919 + tid * 31 + phase)
        c = make_client(self.server.url, max_pool_connections=2)
        ops = ["put"] * 25 + ["get"] * 25 + ["head"] * 10 + ["list"] * 15 + ["delete"] * 8 + \
              ["delobjs"] * 3 + ["copy"] * 6 + ["mpu"] * 2 + ["big"] * 3
        try:
            while not self.stop.is_set():
                op = rng.choice(ops)
                self.count(f"tried:{op}")
                try:
                    self.one(c, rng, op)
                except Exception as e:  # noqa: BLE001
                    self.client_error(op, e)
        finally:
            c.close()

    def one(self, c, rng, op):
        key = rng.choice(KEYS[:100])
        if op in ("put", "big"):
            key = rng.choice(KEYS[100:]) if op == "big" else key
            body = self.body(rng, key, big=op == "big")
            r = c.put_object(Bucket=BUCKET, Key=key, Body=body)
            if r["ETag"] != '"%s"' % hashlib.md5(body).hexdigest():
                self.error(f"put {key}: ETag {r['ETag']}")
        elif op == "get":
            key = rng.choice(KEYS)
            r = c.get_object(Bucket=BUCKET, Key=key)
            data = r["Body"].read()
            vid, why = rl.parse_body(data)
            if vid is None:
                self.error(f"get {key}: {why}")
            elif r["ETag"] != '"%s"' % hashlib.md5(data).hexdigest() and "-" not in r["ETag"]:
                self.error(f"get {key}: ETag {r['ETag']} does not match the bytes")
        elif op == "head":
            c.head_object(Bucket=BUCKET, Key=rng.choice(KEYS))
        elif op == "list":
            prefix = rng.choice(["", "obj/", "dir1/", "dir2/sub1/", "big/"])
            kw = dict(Bucket=BUCKET, Prefix=prefix, MaxKeys=rng.choice([3, 17, 1000]))
            if rng.random() < 0.5:
                kw["Delimiter"] = "/"
            for _ in range(100):
                r = c.list_objects_v2(**kw)
                if not r["IsTruncated"]:
                    break
                kw["ContinuationToken"] = r["NextContinuationToken"]
        elif op == "delete":
            c.delete_object(Bucket=BUCKET, Key=key)
        elif op == "delobjs":
            ks = rng.sample(KEYS[:100], 5)
            r = c.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in ks]})
            if r.get("Errors"):
                self.error(f"delete_objects: {r['Errors']}")
        elif op == "copy":
            dst = rng.choice([k for k in KEYS[:100] if k != key])
            c.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": key})
        elif op == "mpu":
            key = rng.choice(KEYS[100:])
            up = c.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            try:
                body = rl.make_body(rng, key, f"m{rng.getrandbits(40):x}", 5 * MIB + rng.randint(1, MIB))
                parts = [body[:5 * MIB], body[5 * MIB:]]
                etags = []
                for n, p in enumerate(parts, 1):
                    etags.append(c.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=n, Body=p)["ETag"])
                    if rng.random() < 0.2:
                        raise _Abort()
                c.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
                up = None
            except _Abort:
                pass
            finally:
                if up:
                    c.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up)
                    self.count("mpu:aborted")

    # ---- misbehaving connections ---------------------------------------------------------------

    def raw(self, method, path, headers=None, body=b"", query=()):
        """A signed request's bytes (header-signed, payload hash given)."""
        host = f"{self.server.host}:{self.server.port}"
        ph = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else "UNSIGNED-PAYLOAD"
        h = conftest.sign_headers(method, path, list(query), headers or {}, ph, AK, SK, host=host)
        q = conftest._wire_query(list(query))
        target = path + ("?" + q if q else "")
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        return head

    def exchange(self, data, read=True, timeout=20):
        """Sends data, reads the status line; returns the status (or None)."""
        s = socket.create_connection((self.server.host, self.server.port), timeout=timeout)
        try:
            s.sendall(data)
            if not read:
                return None
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            line = buf.split(b"\r\n", 1)[0].split()
            return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None
        finally:
            s.close()

    def chaos_loop(self, phase):
        rng = random.Random(self.args.seed * 104729 + phase)
        kinds = ["drop-head", "drop-put-body", "drop-get", "garbage", "bad-sig", "dotdot", "no-bucket",
                 "huge-head", "bad-md5", "bad-xml", "idle-close"]
        while not self.stop.is_set():
            kind = rng.choice(kinds)
            self.count(f"chaos:{kind}")
            try:
                st = self.chaos(rng, kind)
            except OSError as e:
                st = type(e).__name__
            self.count(f"answer:chaos:{kind}:{st}")
            if isinstance(st, int) and st >= 500:
                self.error(f"chaos {kind}: server answered {st}")
            if kind not in ("drop-head", "drop-put-body", "drop-get", "idle-close") and not (
                    isinstance(st, int) and 400 <= st < 500):
                self.error(f"chaos {kind}: expected a 4xx answer, got {st}")
            time.sleep(rng.uniform(0.05, 0.3))

    def chaos(self, rng, kind):
        key = rng.choice(KEYS)
        path = f"/{BUCKET}/{quote(key)}"
        host = f"{self.server.host}:{self.server.port}"
        if kind == "drop-head":
            head = self.raw("GET", path)
            return self.exchange(head[: rng.randint(5, len(head) - 3)].encode(), read=False)
        if kind == "drop-put-body":
            n = rng.randint(256 << 10, 4 * MIB)
            head = self.raw("PUT", f"/{BUCKET}/drop/{rng.randint(0, 9)}", {"content-length": n}, body=None)
            return self.exchange(head.encode() + b"\r\n" + rng.randbytes(rng.randint(0, n // 2)), read=False)
        if kind == "drop-get":
            head = self.raw("GET", f"/{BUCKET}/{quote(rng.choice(KEYS[100:]))}") + "\r\n"
            s = socket.create_connection((self.server.host, self.server.port), timeout=20)
            try:
                s.sendall(head.encode())
                s.recv(rng.randint(1, 64 << 10))
            finally:
                s.close()
            return None
        if kind == "idle-close":
            s = socket.create_connection((self.server.host, self.server.port), timeout=20)
            time.sleep(rng.uniform(0, 0.5))
            s.close()
            return None
        if kind == "garbage":
            return self.exchange(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n")
        if kind == "bad-sig":
            head = self.raw("GET", path).replace("Signature=", "Signature=0")
            return self.exchange(head.encode() + b"\r\n")
        if kind == "dotdot":
            return self.exchange(self.raw("GET", f"/{BUCKET}/a/../../etc/passwd").encode() + b"\r\n")
        if kind == "no-bucket":
            return self.exchange(self.raw("GET", "/no-such-bucket-here/x").encode() + b"\r\n")
        if kind == "huge-head":
            return self.exchange(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Pad: {'a' * 20000}\r\n\r\n".encode())
        if kind == "bad-md5":
            body = b"hello soak"
            head = self.raw("PUT", f"/{BUCKET}/badmd5", {"content-length": len(body),
                                                        "content-md5": "AAAAAAAAAAAAAAAAAAAAAA=="}, body=body)
            return self.exchange(head.encode() + b"\r\n" + body)
        if kind == "bad-xml":
            body = b"<Delete><Object><Key>x</Key></Obj"
            md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
            head = self.raw("POST", f"/{BUCKET}", {"content-length": len(body), "content-md5": md5}, body=body,
                            query=[("delete", "")])
            return self.exchange(head.encode() + b"\r\n" + body)
        raise AssertionError(kind)

    # ---- phases and samples --------------------------------------------------------------------

    def sample(self, label):
        s = rl.proc_sample(self.server.proc.pid)
        s["conns"] = rl.tcp_conns(self.server.port)
        s["label"] = label
        s["ops"] = sum(v for k, v in self.counts.items() if k.startswith("tried:") or k.startswith("chaos:"))
        self.samples.append(s)
        print(f"  {s['t'] - self.t0:7.1f}s {label:10s} rss={s['rss_kib'] / 1024:7.2f} MiB fds={s['fds']:4d} "
              f"threads={s['threads']:3d} conns={s['conns']:3d} ops={s['ops']}", flush=True)
        return s

    def load(self, seconds, phase):
        self.stop.clear()
        ths = [threading.Thread(target=self.client_loop, args=(t, phase), daemon=True)
               for t in range(self.args.clients)]
        ths.append(threading.Thread(target=self.chaos_loop, args=(phase,), daemon=True))
        for t in ths:
            t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(self.args.sample_every, max(0.0, end - time.monotonic())))
            if self.server.proc.poll() is not None:
                self.error(f"server died (exit {self.server.proc.returncode})")
                break
            self.sample("load")
        self.stop.set()
        for t in ths:
            t.join(120)
            if t.is_alive():
                self.error("a load thread did not stop within 120 s (hung request)")

    def settle(self, label):
        """Polls until no TCP connection to the port is left, at least --settle-min seconds
        have passed (the server keeps its internal connections from the relay to the workers
        open a while after the clients leave: about a minute here), and fds/threads have held
        still for --settle-stable seconds."""
        start = time.monotonic()
        deadline = start + self.args.settle_min + 120
        prev, since = None, start
        while True:
            s = rl.proc_sample(self.server.proc.pid)
            conns = rl.tcp_conns(self.server.port)
            now = (s["fds"], s["threads"], conns)
            t = time.monotonic()
            if now != prev:
                prev, since = now, t
            if conns == 0 and t - start >= self.args.settle_min and t - since >= self.args.settle_stable:
                break
            if t > deadline:
                self.error(f"{label}: did not settle within {deadline - start:.0f}s (fds/threads/conns={now})")
                break
            time.sleep(1.0)
        return self.sample(label)


class _Abort(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--max-size", type=int, default=8 * MIB, help="largest 'big' object (default 8 MiB)")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--rss-tolerance-pct", type=float, default=10.0)
    ap.add_argument("--rss-tolerance-mib", type=float, default=4.0)
    ap.add_argument("--settle-min", type=float, default=65.0,
                    help="seconds to wait at least after load stops before an idle sample")
    ap.add_argument("--settle-stable", type=float, default=10.0,
                    help="seconds fds/threads must hold still for an idle sample")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--server-flags", default="",
                    help="more flags for the server, e.g. '--dir-cache-time 30s' to see caches settle sooner")
    args = ap.parse_args()
    binary = rl.default_bin()
    work = Path(tempfile.mkdtemp(prefix="s3serve-soak-"))
    data = work / "data"
    data.mkdir()
    warm = min(60.0, args.seconds / 3)
    print(f"soak: {binary} --workers 4, seed={args.seed}, clients={args.clients}+1 misbehaving, "
          f"{args.seconds:.0f}s (warm {warm:.0f}s), data={data}", flush=True)
    srv = rl.start_server(data, ["--workers", "4", *args.server_flags.split()], work)
    soak = Soak(args, srv)
    soak.t0 = time.monotonic()
    failures = []
    try:
        make_client(srv.url).create_bucket(Bucket=BUCKET)
        soak.sample("start")
        soak.load(warm, 1)
        early = soak.settle("EARLY-idle")
        soak.load(args.seconds - warm, 2)
        end = soak.settle("END-idle")
        alive = srv.proc.poll() is None
    finally:
        code = srv.stop()
    elapsed = time.monotonic() - soak.t0
    log = srv.log()
    if not alive:
        failures.append(f"server died (exit {srv.proc.returncode})")
    elif code != 0:
        failures.append(f"server exited with {code} on SIGTERM")
    if "panicked at" in log:
        failures.append("server logged a panic:\n" + log[-3000:])
    temps = rl.temp_files(data)
    if temps:
        failures.append(f"temporary files left in the tree: {temps[:10]}")
    tol = max(early["rss_kib"] * args.rss_tolerance_pct / 100, args.rss_tolerance_mib * 1024)
    if end["fds"] != early["fds"]:
        failures.append(f"descriptors: {early['fds']} early, {end['fds']} at the end (idle to idle)")
    if end["threads"] != early["threads"]:
        failures.append(f"threads: {early['threads']} early, {end['threads']} at the end (idle to idle)")
    if end["rss_kib"] > early["rss_kib"] + tol:
        failures.append(f"RSS: {early['rss_kib'] / 1024:.2f} MiB early, {end['rss_kib'] / 1024:.2f} MiB at "
                        f"the end, more than the tolerance {tol / 1024:.2f} MiB")
    failures += soak.errors

    print(f"\nsoak: done in {elapsed:.1f}s")
    print("operations tried:")
    for k in sorted(soak.counts):
        if k.startswith("tried:") or k.startswith("chaos:") or k.startswith("mpu:"):
            print(f"  {k:28s} {soak.counts[k]}")
    print("answers other than success:")
    for k in sorted(soak.counts):
        if k.startswith("answer:"):
            print(f"  {k[7:]:40s} {soak.counts[k]}")
    peak = max(s["rss_kib"] for s in soak.samples)
    print(f"samples: early idle rss={early['rss_kib'] / 1024:.2f} MiB fds={early['fds']} threads={early['threads']}; "
          f"end idle rss={end['rss_kib'] / 1024:.2f} MiB fds={end['fds']} threads={end['threads']}; "
          f"peak under load rss={peak / 1024:.2f} MiB; RSS tolerance {tol / 1024:.2f} MiB "
          f"(max {args.rss_tolerance_pct:g}%, {args.rss_tolerance_mib:g} MiB)")
    print("checks: fds idle==idle, threads idle==idle, RSS within tolerance, no 5xx but SlowDown, "
          "bad requests 4xx, whole GET bodies, no temporaries left, no panic")
    if failures:
        print(f"\nFAIL: {len(failures)} problem(s):")
        for f in failures[:20]:
            print("  -", f[:1000])
        print(f"(data and log in {work})")
        sys.exit(1)
    print("\nPASS")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
