#!/usr/bin/env python3
"""Multipart upload benchmark: s3serve beside the reference rclone serve s3, in one run.

Uploads one file (default 4 GiB) in 16 MiB parts with 4 in flight (boto3's managed
transfer), to each server in turn on fresh directories, and reports wall time, throughput
and the server's peak RSS (VmHWM) and CPU seconds. The bytes on disk are compared with the
source, so a server that stores garbage cannot win.

Usage: .venv/bin/python scripts/bench_multipart.py [--size-mib 4096] [--rounds 1]
Env: S3SERVE_BIN (default target/release/s3serve), RCLONE_BIN (default: what scripts/rclone-ref finds or installs).
"""

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rclone_bin():
    if os.environ.get("RCLONE_BIN"):
        return os.environ["RCLONE_BIN"]
    out = subprocess.run([str(REPO / "scripts" / "rclone-ref")], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return out.strip()


def proc_stats(pid):
    """(peak RSS in MiB, CPU seconds) of a running process."""
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm, (int(fields[11]) + int(fields[12])) / ticks


def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit(f"server did not start: {cmd}")


def file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def run_one(name, cmd_for, src, src_md5):
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", dir=src.parent) as data:
        port = free_port()
        proc = start(cmd_for(port, data), port)
        try:
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="AKID", aws_secret_access_key="SECRET",
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                            read_timeout=600))
            s3.create_bucket(Bucket="bench")
            _, cpu0 = proc_stats(proc.pid)
            cfg = TransferConfig(multipart_threshold=16 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)
            t0 = time.monotonic()
            s3.upload_file(str(src), "bench", "big.bin", Config=cfg)
            secs = time.monotonic() - t0
            rss, cpu1 = proc_stats(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        ok = file_md5(Path(data) / "bench" / "big.bin") == src_md5
        return {"secs": secs, "mbps": src.stat().st_size / MIB / secs, "rss": rss, "cpu": cpu1 - cpu0, "ok": ok}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    s3serve = os.environ.get("S3SERVE_BIN", str(REPO / "target/release/s3serve"))
    rclone = rclone_bin()
    servers = {
        "s3serve": lambda port, d: [s3serve, "--addr", f"127.0.0.1:{port}", "--auth-key", "AKID,SECRET", d],
        "rclone": lambda port, d: [rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", "AKID,SECRET", d],
    }
    with tempfile.TemporaryDirectory(prefix="bench-src-", dir=str(REPO / "target")) as tmp:
        src = Path(tmp) / "src.bin"
        with open(src, "wb") as f:
            block = os.urandom(16 * MIB)
            for i in range(args.size_mib // 16):
                f.write(hashlib.sha256(block + i.to_bytes(4, "big")).digest() + block[32:])
        src_md5 = file_md5(src)
        results = {n: [] for n in servers}
        for _ in range(args.rounds):  # interleaved round by round
            for name, cmd in servers.items():
                results[name].append(run_one(name, cmd, src, src_md5))
    print(f"| {args.size_mib} MiB upload, 16 MiB parts, 4 in flight | MiB/s | seconds | peak RSS MiB | server CPU s | bytes ok |")
    print("|---|---|---|---|---|---|")
    med = {}
    for name, rs in results.items():
        rs.sort(key=lambda r: r["secs"])
        m = rs[len(rs) // 2]
        med[name] = m
        print(f"| {name} | {m['mbps']:.0f} | {m['secs']:.1f} | {m['rss']:.1f} | {m['cpu']:.1f} | {all(r['ok'] for r in rs)} |")
    a, b = med["s3serve"], med["rclone"]
    print(f"\nratios s3serve/rclone: throughput {a['mbps'] / b['mbps']:.2f}x, peak RSS {a['rss'] / b['rss']:.2f}x, CPU {a['cpu'] / b['cpu']:.2f}x")
    if not all(r["ok"] for rs in results.values() for r in rs):
        sys.exit("a server stored wrong bytes")


if __name__ == "__main__":
    main()
