#!/usr/bin/env python3
"""What the protected front costs: s3serve (our accept loop and relay in front of tiny_http)
against the same S3 handler behind tiny_http serving TCP directly (scripts/bench/direct.rs),
and, with --rclone, against `rclone serve s3` too. All run at once over one directory, and
the workloads go to each in turn, round after round, so that machine noise hits all alike.

    python3 scripts/bench_front.py [--rounds 3] [--secs 4] [--rclone PATH] [--out FILE]

Workloads (unsigned requests; the servers run without --auth-key), by scripts/bench/load.rs:
  small1/small8   keep-alive GETs of a 4 KiB object on 1 and 8 connections (requests/s)
  churn8          a new connection for every GET of the 4 KiB object, 8 at a time (requests/s)
  get1/get4       GET of a 1 GiB object on 1 stream, and on 4 streams at once (MiB/s)
  put1/put4       PUT of 1 GiB on 1 stream, and of 256 MiB on each of 4 streams (MiB/s)
Prints a markdown table of medians and ratios to the direct baseline, and each server's CPU
seconds and peak RSS over the whole run.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASE = REPO / "target" / "release"
MiB = 1 << 20

WORKLOADS = [
    # name, load arguments, unit, field
    ("small1", ["get", "/bench/small", "--conns", "1"], "req/s", "rps"),
    ("small8", ["get", "/bench/small", "--conns", "8"], "req/s", "rps"),
    ("churn8", ["churn", "/bench/small", "--conns", "8"], "req/s", "rps"),
    ("get1", ["getonce", "/bench/big", "--conns", "1"], "MiB/s", "mibps"),
    ("get4", ["getonce", "/bench/big", "--conns", "4"], "MiB/s", "mibps"),
    ("put1", ["putonce", "/bench/put{i}", "--conns", "1", "--bytes", str(1024 * MiB)], "MiB/s", "mibps"),
    ("put4", ["putonce", "/bench/put{i}", "--conns", "4", "--bytes", str(256 * MiB)], "MiB/s", "mibps"),
]

# The targets of the protected front against the direct baseline.
TARGETS = {"small1": 0.85, "small8": 0.85, "churn8": 0.7, "get1": 0.8, "get4": 0.95, "put1": 1.0, "put4": 1.0}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"a server exited at start-up: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"no server on port {port}")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=4.0, help="length of each timed workload")
    ap.add_argument("--rclone", help="also measure this rclone binary's `serve s3`")
    ap.add_argument("--dir", help="where to put the data (default: a temporary directory)")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--only", help="comma-separated workloads to run")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--bins", "--examples", "-q"], cwd=REPO, check=True)
    base = Path(args.dir or tempfile.mkdtemp(prefix="s3serve-bench-"))
    data = base / "data"
    (data / "bench").mkdir(parents=True, exist_ok=True)
    small = data / "bench" / "small"
    small.write_bytes(os.urandom(4096))
    big = data / "bench" / "big"
    if not big.exists() or big.stat().st_size != 1024 * MiB:
        with open(big, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(MiB))

    servers = {}
    logs = []

    def start(name, cmd, port):
        log = open(base / f"{name}.log", "wb")
        logs.append(log)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_port(port, proc)
        servers[name] = (proc, port)

    p = free_port()
    start("direct", [str(RELEASE / "examples" / "direct"), f"127.0.0.1:{p}", str(data)], p)
    p = free_port()
    start("s3serve", [str(RELEASE / "s3serve"), "--addr", f"127.0.0.1:{p}", str(data)], p)
    if args.rclone:
        p = free_port()
        env = dict(os.environ, RCLONE_CONFIG=str(base / "rclone.conf"))
        log = open(base / "rclone.log", "wb")
        logs.append(log)
        proc = subprocess.Popen([args.rclone, "serve", "s3", "--addr", f"127.0.0.1:{p}", str(data)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_port(p, proc)
        servers["rclone"] = (proc, p)

    workloads = [w for w in WORKLOADS if not args.only or w[0] in args.only.split(",")]
    results = {(w[0], s): [] for w in workloads for s in servers}
    cpu = {s: 0.0 for s in servers}
    try:
        for r in range(args.rounds):
            for name, load_args, unit, field in workloads:
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for s in order:
                    proc, port = servers[s]
                    before = cpu_seconds(proc.pid)
                    cmd = [str(RELEASE / "examples" / "load"), load_args[0], f"127.0.0.1:{port}", *load_args[1:]]
                    if not load_args[0].endswith("once"):
                        cmd += ["--secs", str(args.secs)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                    got = json.loads(out)
                    if got["errors"]:
                        print(f"  {s} {name}: {got['errors']} errors", file=sys.stderr)
                    cpu[s] += cpu_seconds(proc.pid) - before
                    results[(name, s)].append(got[field])
                    print(f"round {r + 1} {name:7} {s:8} {got[field]:10.1f} {unit}", file=sys.stderr)
        rss = {s: peak_rss_mib(servers[s][0].pid) for s in servers}
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    names = list(servers)
    head = "| workload | unit | " + " | ".join(names) + " | s3serve/direct | target |"
    if "rclone" in servers:
        head += " s3serve/rclone |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, _, unit, _ in workloads:
        med = {s: statistics.median(results[(name, s)]) for s in names}
        ratio = med["s3serve"] / med["direct"] if med["direct"] else 0
        row = f"| {name} | {unit} | " + " | ".join(f"{med[s]:.0f}" for s in names)
        row += f" | {ratio:.2f}x | {TARGETS[name]:.2f}x |"
        if "rclone" in servers:
            row += f" {med['s3serve'] / med['rclone']:.2f}x |" if med["rclone"] else " - |"
        lines.append(row)
    lines.append("")
    lines.append("Server CPU seconds over the run: " + ", ".join(f"{s} {cpu[s]:.1f}" for s in names))
    lines.append("Peak RSS: " + ", ".join(f"{s} {rss[s]:.1f} MiB" for s in names))
    lines.append(f"Medians of {args.rounds} rounds; timed workloads ran {args.secs:g} s each; "
                 f"{os.cpu_count()} CPUs.")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
