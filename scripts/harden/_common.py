"""Helpers shared by the hardening scripts in scripts/harden (not a script itself).

- The client suite's conftest (Server, make_client, ...): the binary is $S3SERVE_BIN, else
  target/release/s3serve.
- Temporaries the server leaves (src/temps.rs names, the cache's `.NAME.s3serve-tmp`), content
  versions (bytes -> MD5/ETag), a violation log, a summary table printer, panics in logs.
- Self-describing bodies: `make_body` writes a header (key, version id, total length, SHA-1 of
  the rest) followed by pseudo-random bytes; `parse_body` says which version a body is, or why
  it is not a whole one (short, mixed, corrupt).
- /proc sampling of a server process, and its TCP connections.
"""


import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts" / "clients"))

import conftest  # noqa: E402
from conftest import AK, SK, UPSTREAM_AK, UPSTREAM_SK, Server, free_port, make_client  # noqa: E402,F401
from botocore.exceptions import ClientError  # noqa: E402,F401

# src/temps.rs TEMP_PREFIX: temporaries in the tree, the upload folders and the spool.
TEMP_PREFIX = ".s3serve-tmp-"
# src/vfs/cache/store.rs write_atomic: `.NAME.s3serve-tmp` beside a cache record.
CACHE_TEMP_SUFFIX = ".s3serve-tmp"


def find_temps(root):
    """Every temporary (file or folder) under root, as paths relative to it."""
    root = Path(root)
    out = []
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            if name.startswith(TEMP_PREFIX) or name.endswith(CACHE_TEMP_SUFFIX):
                out.append(str(Path(dirpath, name).relative_to(root)))
    return sorted(out)


def files_in(d):
    """Entries directly in d (empty if it does not exist)."""
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


def poll(fn, timeout=30.0, interval=0.1):
    """fn()'s first truthy result, or its last result once timeout has passed."""
    return conftest.poll(fn, timeout, interval)


def md5hex(b):
    return hashlib.md5(b).hexdigest()


def multipart_etag(parts):
    """S3's ETag of a multipart object made of these part bodies."""
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


class Version:
    """One body a client sent for a key: its MD5, size and the ETag S3 should give it."""

    __slots__ = ("label", "md5", "size", "etag")

    def __init__(self, label, md5, size, etag):
        self.label, self.md5, self.size, self.etag = label, md5, size, etag

    @classmethod
    def of(cls, label, body, etag=None):
        m = md5hex(body)
        return cls(label, m, len(body), etag or m)

    def __repr__(self):
        return f"<{self.label} {self.size}B md5={self.md5[:8]} etag={self.etag[:12]}>"


def describe(v):
    return "absent" if v is None else repr(v)


class Violations:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        line = f"VIOLATION [{where}] {msg}"
        print(line, flush=True)
        self.items.append(line)

    def __bool__(self):
        return bool(self.items)

    def finish(self, work, keep):
        """Exits 1 listing the violations (keeping the work dir), or removes the work dir
        unless asked to keep it."""
        if self.items:
            for line in self.items:
                print(line)
            print(f"work dir kept: {work}")
            sys.exit(1)
        if keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def table(rows, headers):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*headers), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(lines)


def s3_error(e):
    """(status, code, message) of a ClientError."""
    r = e.response
    return (r["ResponseMetadata"]["HTTPStatusCode"], r.get("Error", {}).get("Code"),
            r.get("Error", {}).get("Message"))


def panics(servers):
    """Log excerpts of servers that logged a panic."""
    out = []
    for s in servers:
        log = s.log()
        if "panicked at" in log:
            i = log.index("panicked at")
            out.append(f"{s.log_path}: {log[max(0, i - 300):i + 700]}")
    return out

HEADER_RE = re.compile(rb"^RACE1 key=(\S+) vid=(\S+) len=(\d+) sha1=([0-9a-f]{40})\n")
EMPTY_VID = "empty"


def default_bin():
    """The binary under test ($S3SERVE_BIN, else the release build), for the report."""
    return conftest.S3SERVE_BIN


def header_len(key, vid, size):
    return len(b"RACE1 key=%s vid=%s len=%d sha1=%s\n" % (key.encode(), vid.encode(), size, b"0" * 40))


def make_body(rng, key, vid, size):
    """A body of exactly `size` bytes (0, or at least the header's length) naming its version."""
    if size == 0:
        return b""
    hl = header_len(key, vid, size)
    size = max(size, hl)
    rest = rng.randbytes(size - hl)
    head = b"RACE1 key=%s vid=%s len=%d sha1=%s\n" % (
        key.encode(), vid.encode(), size, hashlib.sha1(rest).hexdigest().encode())
    assert len(head) == hl
    return head + rest


def parse_body(body):
    """(vid, None) for a whole self-describing body, or (None, why) when it is not one."""
    if len(body) == 0:
        return EMPTY_VID, None
    m = HEADER_RE.match(body[:300])
    if not m:
        return None, f"no header (first bytes {body[:60]!r}, {len(body)} bytes)"
    vid = m.group(2).decode()
    size = int(m.group(3))
    if len(body) != size:
        return None, f"version {vid}: {len(body)} bytes, its header says {size} (short or mixed)"
    if hashlib.sha1(body[m.end():]).hexdigest() != m.group(4).decode():
        return None, f"version {vid}: bytes after the header do not match its SHA-1 (mixed or corrupt)"
    return vid, None


def start_server(data_dir, flags, workdir):
    """A conftest.Server; start-up failures raise instead of failing a pytest test."""
    return Server(data_dir, flags=flags, workdir=workdir)


def proc_sample(pid):
    """{'rss_kib', 'fds', 'threads'} of a live process, from /proc."""
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kib": rss, "fds": fds, "threads": threads, "t": time.monotonic()}


def tcp_conns(port):
    """TCP connections to or from port that a process may still hold (not LISTEN, TIME_WAIT
    or CLOSE), from /proc/net/tcp."""
    hexport = f"{port:04X}"
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            # LISTEN, TIME_WAIT and CLOSE hold no process's descriptor.
            if state in ("0A", "06", "07"):
                continue
            if local.endswith(":" + hexport) or remote.endswith(":" + hexport):
                n += 1
    return n


def temp_files(root):
    """Every temporary file or folder anywhere under root, relative."""
    return find_temps(root)


def empty_dirs(root):
    """Directories under root (not root itself, not under .s3serve) with no entries."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == "." or rel.split(os.sep)[0].startswith(".s3serve"):
            continue
        if not dirnames and not filenames:
            out.append(rel)
    return sorted(out)
