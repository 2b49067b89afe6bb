"""Slow, stalled and dying clients hold no worker (issue 13).

Each client connection has a relay thread that receives a request body completely (small
ones in memory, big or chunked ones into a spool file under `<root>/.s3serve/spool`) before
a worker is given the request. It checks the head first (signature, --read-only, missing
bucket) and only then sends `100 Continue`; it refuses a body that cannot fit the free space
with 507 before reading it; a client that leaves mid-body leaves no spool file behind.

With `--workers 2`, a handful of stalled uploaders or non-reading downloaders would block
every other request if workers read bodies or wrote answers themselves. Here dozens (and a
thousand) of them are held open while boto3 does a full round of work.

No test asserts on time: timeouts below only keep a broken server from hanging the suite.
"""

import hashlib
import io
import os
import resource
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import (
    local_only,
    AK,
    EMPTY_SHA256,
    SK,
    USE_RCLONE,
    err,
    expect_error,
    files_under,
    poll,
    sign_headers,
    unique_bucket_name,
    xml_error_code,
)
from test_listeners import make_ca, make_leaf

pytestmark = pytest.mark.skipif(USE_RCLONE, reason="s3serve's own front")

UNSIGNED = "UNSIGNED-PAYLOAD"
MiB = 1024 * 1024
HUGE = 1_000_000_000  # the length a stalled upload declares, room permitting (stall_length)
HANG_GUARD = 30  # seconds; socket timeouts, never asserted on

SCHEMES = ["http", "tls"]


# --------------------------------------------------------------------------------------------
# Servers, raw connections, raw requests


def serve(start_server, tmp_path, scheme, *flags):
    """A server with `flags`, over TLS if scheme is 'tls'. Returns (server, boto3 client,
    ssl context for raw connections or None)."""
    if scheme == "http":
        srv = start_server(*flags)
        return srv, srv.client(), None
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    srv = start_server("--cert", cert, "--key", key, *flags)
    ctx = ssl.create_default_context(cafile=str(ca))
    return srv, srv.client(verify=str(ca)), ctx


def connect(srv, ctx=None, rcvbuf=None):
    """A raw connection to the server (TLS with `ctx`), with a hang-guard timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(HANG_GUARD)
    s.connect((srv.host, srv.port))
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname=srv.host)
    return s


def signed_head(srv, method, path, headers=None, unsigned_headers=None, sk=SK, payload_hash=UNSIGNED):
    """The bytes of a SigV4-signed request head (path already encoded, no query).
    `unsigned_headers` are added after signing, as boto3 does with Expect."""
    h = sign_headers(method, path, [], dict(headers or {}), payload_hash, AK, sk, host=f"{srv.host}:{srv.port}")
    h.update(unsigned_headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def put_head(srv, path, length, expect=False, sk=SK):
    return signed_head(srv, "PUT", path, {"content-length": str(length)},
                       {"expect": "100-continue"} if expect else None, sk=sk)


def read_head(s, buf=b""):
    """Reads one response head; returns (status line, {lower name: value}, bytes after it)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a whole response head: {buf[:500]!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, rest


def read_response(s, buf=b""):
    """One whole response with a Content-Length body: (status line, headers, body, rest)."""
    status, headers, rest = read_head(s, buf)
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed inside a response body: {status} {rest[:300]!r}")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def pending_answer(s):
    """What the server has sent on `s` without being asked to wait: None if nothing yet
    (the request is still held), else the bytes (b'' if it closed the connection)."""
    s.setblocking(False)
    try:
        return s.recv(4096)
    except (BlockingIOError, ssl.SSLWantReadError):
        return None
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        s.settimeout(HANG_GUARD)


def stall_length(srv):
    """The length a stalled upload declares: HUGE (1 GB), or less where the free space under
    the served root is smaller (a declared length that does not fit is refused with 507).
    Only what a body has written, and a step ahead, is promised: many stalled uploads may
    together declare far more than the disk holds, and are still all held."""
    st = os.statvfs(srv.data_dir)
    room = st.f_bavail * st.f_frsize - 4 * 1024**3
    length = min(HUGE, room)
    if length < 64 * MiB:
        pytest.skip(f"too little free space under {srv.data_dir} for stalled uploads")
    return length


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class Trickler(threading.Thread):
    """One thread sending one body byte a second to each of `socks`, a first round at once."""

    def __init__(self, socks):
        super().__init__(daemon=True)
        self.socks = socks
        self.stopping = threading.Event()
        self.first_round = threading.Event()
        self.rounds = 0
        self.errors = []

    def run(self):
        while True:
            for i, s in enumerate(self.socks):
                try:
                    s.sendall(b"t")
                except OSError as e:
                    self.errors.append((i, repr(e)))
            self.rounds += 1
            self.first_round.set()
            if self.stopping.wait(1.0):
                return

    def stop(self):
        self.stopping.set()
        self.join(HANG_GUARD)
        assert not self.is_alive(), "the trickling thread did not stop"


# --------------------------------------------------------------------------------------------
# The server's side: spool files, memory


def spool_dir(srv):
    return Path(os.path.realpath(srv.data_dir)) / ".s3serve" / "spool"


def spool_fds(srv):
    """The server's open descriptors on files in its spool folder (unnamed spool files show
    as `<spool>/#123 (deleted)`), as {fd: link target}."""
    prefix = str(spool_dir(srv)) + "/"
    out = {}
    fd_dir = Path(f"/proc/{srv.proc.pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(prefix):
            out[int(entry.name)] = target
    return out


def spool_sizes(srv):
    sizes = []
    for fd in spool_fds(srv):
        try:
            sizes.append(os.stat(f"/proc/{srv.proc.pid}/fd/{fd}").st_size)
        except OSError:
            pass
    return sizes


def wait_spool_released(srv, timeout=20):
    """Polls until the server holds no spool file; returns what it still holds (empty: ok)."""
    poll(lambda: not spool_fds(srv), timeout=timeout)
    return spool_fds(srv)


def vm_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def log_tail(srv, n=3000):
    return srv.log()[-n:]


# --------------------------------------------------------------------------------------------
# The round of work that must go through while workers would be tied up


SEED = {
    "top.txt": b"top level\n",
    "dir1/a.txt": b"first in dir1\n",
    "dir1/b.txt": b"second in dir1\n",
    "dir2/c.txt": b"only in dir2\n",
    "seed/data.bin": os.urandom(100_000),
}


def seed(c, bucket):
    for k, v in SEED.items():
        c.put_object(Bucket=bucket, Key=k, Body=v)


def md5(data):
    return hashlib.md5(data).hexdigest()


def full_round(c, bucket):
    """GetObject, HeadObject, a delimited ListObjectsV2, a 4 KiB and a 64 MiB PutObject, a
    3-part multipart upload and DeleteObjects, each checked. Returns the keys it left."""
    data = SEED["seed/data.bin"]
    got = c.get_object(Bucket=bucket, Key="seed/data.bin")["Body"].read()
    assert got == data

    h = c.head_object(Bucket=bucket, Key="seed/data.bin")
    assert h["ContentLength"] == len(data)
    assert h["ETag"] == f'"{md5(data)}"'

    r = c.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert sorted(p["Prefix"] for p in r.get("CommonPrefixes", [])) == ["dir1/", "dir2/", "seed/"]
    assert [o["Key"] for o in r.get("Contents", [])] == ["top.txt"]
    r = c.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="dir1/")
    assert [o["Key"] for o in r.get("Contents", [])] == ["dir1/a.txt", "dir1/b.txt"]
    assert r.get("CommonPrefixes", []) == []

    small = os.urandom(4096)
    c.put_object(Bucket=bucket, Key="new/small", Body=small)
    assert c.get_object(Bucket=bucket, Key="new/small")["Body"].read() == small

    big = os.urandom(64 * MiB)
    r = c.put_object(Bucket=bucket, Key="new/big", Body=big)
    assert r["ETag"] == f'"{md5(big)}"'
    back = c.get_object(Bucket=bucket, Key="new/big")["Body"].read()
    assert len(back) == len(big) and back == big

    parts = [os.urandom(5 * MiB) for _ in range(3)]
    up = c.create_multipart_upload(Bucket=bucket, Key="new/multi")["UploadId"]
    etags = []
    for n, p in enumerate(parts, 1):
        e = c.upload_part(Bucket=bucket, Key="new/multi", UploadId=up, PartNumber=n, Body=p)["ETag"]
        assert e == f'"{md5(p)}"'
        etags.append(e)
    c.complete_multipart_upload(
        Bucket=bucket, Key="new/multi", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    whole = b"".join(parts)
    assert c.get_object(Bucket=bucket, Key="new/multi")["Body"].read() == whole
    assert c.head_object(Bucket=bucket, Key="new/multi")["ContentLength"] == len(whole)

    r = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "new/small"}, {"Key": "new/big"}]})
    assert sorted(d["Key"] for d in r.get("Deleted", [])) == ["new/big", "new/small"]
    assert not r.get("Errors")
    for k in ("new/small", "new/big"):
        expect_error(404, None, c.head_object, Bucket=bucket, Key=k)
    return sorted(list(SEED) + ["new/multi"])


def all_keys(c, bucket):
    keys = []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


# --------------------------------------------------------------------------------------------
# 1. Stalled uploaders


@local_only("a gateway spools in $TMPDIR, not in the served directory these tests watch")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_stalled_uploaders_hold_no_worker(start_server, tmp_path, scheme):
    """64 signed PUTs declaring 1 GB each send two bytes and stall (half of them trickle a
    byte a second); with two workers, a full round of boto3 work still goes through."""
    srv, c, ctx = serve(start_server, tmp_path, scheme, "--workers", "2", "--idle-timeout", "5m")
    bucket = unique_bucket_name(f"stall-{scheme}")
    c.create_bucket(Bucket=bucket)
    seed(c, bucket)
    length = stall_length(srv)
    socks = []
    trickler = None
    try:
        for i in range(64):
            s = connect(srv, ctx)
            s.sendall(put_head(srv, f"/{bucket}/stall-{i}", length) + b"ab")
            socks.append(s)
        # Every head was taken (signature checked, room promised) and its body is spooling.
        poll(lambda: len(spool_fds(srv)) >= 64, timeout=HANG_GUARD)
        assert len(spool_fds(srv)) == 64, (
            f"{len(spool_fds(srv))} of 64 stalled uploads are spooling; answers: "
            f"{[pending_answer(s) for s in socks[:3]]}\n{log_tail(srv)}")
        trickler = Trickler(socks[::2])
        trickler.start()
        assert trickler.first_round.wait(HANG_GUARD)

        left = full_round(c, bucket)

        trickler.stop()
        assert not trickler.errors, trickler.errors
        # Every trickled byte reached its spool file: the relays kept reading.
        want = 64 * 2 + 32 * trickler.rounds
        poll(lambda: sum(spool_sizes(srv)) == want, timeout=HANG_GUARD)
        assert sum(spool_sizes(srv)) == want, (sorted(spool_sizes(srv)), trickler.rounds)
        # The stalled uploads are all still waiting for their bodies: none was answered.
        answered = {i: a for i, s in enumerate(socks) if (a := pending_answer(s)) is not None}
        assert not answered, f"stalled uploads answered or closed: {dict(list(answered.items())[:5])}"
    finally:
        if trickler is not None and trickler.is_alive():
            trickler.stopping.set()
            trickler.join(HANG_GUARD)
        close_all(socks)
    # Their spool files go with them, and none of them became an object.
    assert wait_spool_released(srv) == {}
    assert all_keys(c, bucket) == left
    sd = spool_dir(srv)
    assert not sd.exists() or list(sd.iterdir()) == []


# --------------------------------------------------------------------------------------------
# 2. Downloaders that do not read


@pytest.mark.parametrize("scheme", SCHEMES)
def test_non_reading_getters_hold_no_worker(start_server, tmp_path, scheme):
    """64 signed GETs of a 32 MiB object whose clients never read past the response head
    (and have a small receive buffer); with two workers, a full round of boto3 work still
    goes through."""
    srv, c, ctx = serve(start_server, tmp_path, scheme, "--workers", "2", "--idle-timeout", "5m")
    bucket = unique_bucket_name(f"noread-{scheme}")
    c.create_bucket(Bucket=bucket)
    seed(c, bucket)
    size = 32 * MiB
    blob = os.urandom(size)
    c.put_object(Bucket=bucket, Key="seed/large", Body=blob)
    socks = []
    try:
        # One after the other (a burst of 64 bodiless requests at once would be shed with
        # 503 SlowDown past the queue limit, 8 per worker): each GET is answered (200) while
        # all the earlier ones sit unread, so the earlier ones hold no worker either. Only the
        # start of each answer is read; the rest backs up.
        for i in range(64):
            s = connect(srv, ctx, rcvbuf=4096)
            socks.append(s)
            s.sendall(signed_head(srv, "GET", f"/{bucket}/seed/large", payload_hash=EMPTY_SHA256))
            status, headers, _ = read_head(s)
            assert status.startswith("HTTP/1.1 200"), (i, status)
            assert headers.get("content-length") == str(size), (i, headers)

        left = full_round(c, bucket)

        # The stalled answers are still incomplete: the clients really held them up.
        assert all(pending_answer(s) != b"" for s in socks)
    finally:
        close_all(socks)
    assert all_keys(c, bucket) == sorted(left + ["seed/large"])
    assert c.get_object(Bucket=bucket, Key="seed/large")["Body"].read() == blob


# --------------------------------------------------------------------------------------------
# 3. A thousand stalled uploaders


@local_only("a gateway spools in $TMPDIR, not in the served directory these tests watch")
def test_thousand_stalled_uploaders_stay_small(start_server):
    # The server takes six descriptors per connection (src/server/listen.rs) and this process
    # one: 1000 connections need about 7,100. Raise the limit as far as allowed (past the hard
    # limit only with CAP_SYS_RESOURCE); the server inherits it.
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (max(before[1], 65536), before[1]):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            break
        except (ValueError, OSError):
            pass
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"the descriptor limit is {hard}; 1000 connections need more")

    srv = start_server("--workers", "2", "--idle-timeout", "5m")
    c = srv.client()
    bucket = unique_bucket_name("thousand")
    c.create_bucket(Bucket=bucket)
    data = os.urandom(200_000)
    c.put_object(Bucket=bucket, Key="k", Body=data)
    # Together they declare far more than the disk holds (1000 x 1 GB), and are all held.
    length = stall_length(srv)
    socks = []
    try:
        for i in range(1000):
            s = connect(srv)
            s.sendall(put_head(srv, f"/{bucket}/stall-{i}", length) + b"abc")
            socks.append(s)
        poll(lambda: len(spool_fds(srv)) >= 1000, timeout=HANG_GUARD)
        spooling = len(spool_fds(srv))
        answered = {i: a for i, s in enumerate(socks) if (a := pending_answer(s)) is not None}
        assert not answered and spooling == 1000, (
            f"{spooling} of 1000 stalled uploads are spooling, {len(answered)} were answered, e.g. "
            f"{[a[:400] for a in list(answered.values())[:2]]}\n{log_tail(srv)}")
        assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == data
        rss = vm_rss_kib(srv.proc.pid)
        assert rss < 64 * 1024, f"server VmRSS {rss} KiB with 1000 stalled uploads\n{log_tail(srv)}"
    finally:
        close_all(socks)
    assert "ERROR" not in srv.log(), log_tail(srv)


# --------------------------------------------------------------------------------------------
# 4. Expect: 100-continue


@pytest.mark.parametrize("length, sk, status, code", [
    (MiB, "NOT-THE-SECRET", 403, "SignatureDoesNotMatch"),
    (5 * 1024**3 + 1, SK, 400, "EntityTooLarge"),
], ids=["bad-signature", "over-5-GiB"])
def test_expect_continue_refused_from_the_head_without_100(start_server, length, sk, status, code):
    srv = start_server()
    c = srv.client()
    bucket = unique_bucket_name("expect-refused")
    c.create_bucket(Bucket=bucket)
    with connect(srv) as s:
        s.sendall(put_head(srv, f"/{bucket}/k", length, expect=True, sk=sk))
        # The body is never sent: the refusal comes from the head alone, and comes first.
        line, headers, body, _ = read_response(s)
        assert line.startswith(f"HTTP/1.1 {status}"), line
        assert xml_error_code(body) == code, body
    assert wait_spool_released(srv) == {}
    expect_error(404, None, c.head_object, Bucket=bucket, Key="k")
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert files_under(srv.data_dir / bucket) == []


def test_expect_continue_good_signature_gets_100_then_200(start_server):
    srv = start_server()
    c = srv.client()
    bucket = unique_bucket_name("expect-good")
    c.create_bucket(Bucket=bucket)
    data = os.urandom(MiB)
    with connect(srv) as s:
        s.sendall(put_head(srv, f"/{bucket}/k", len(data), expect=True))
        status, headers, rest = read_head(s)
        assert status == "HTTP/1.1 100 Continue", status
        assert rest == b"", rest[:300]
        s.sendall(data)
        status, headers, body, _ = read_response(s, rest)
        assert status.startswith("HTTP/1.1 200"), (status, body[:500])
        assert headers.get("etag") == f'"{md5(data)}"', headers
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == data


# --------------------------------------------------------------------------------------------
# 5. A client dying mid-body


@local_only("a gateway spools in $TMPDIR, not in the served directory these tests watch")
def test_client_dying_mid_put_leaves_nothing(start_server):
    srv = start_server()
    c = srv.client()
    bucket = unique_bucket_name("dying")
    c.create_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    sent = 50 * MiB
    s = connect(srv)
    try:
        s.sendall(put_head(srv, f"/{bucket}/dead", 100 * MiB))
        chunk = os.urandom(MiB)
        for _ in range(sent // MiB):
            s.sendall(chunk)
        # The body really is being spooled before the client dies (a hang guard, not a timing).
        poll(lambda: max(spool_sizes(srv), default=0) >= sent - 16 * MiB, timeout=HANG_GUARD)
        assert max(spool_sizes(srv), default=0) >= sent - 16 * MiB, (spool_fds(srv), spool_sizes(srv))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    finally:
        s.close()  # with SO_LINGER 0: a reset
    held = wait_spool_released(srv)
    assert held == {}, f"the server still holds spool files after the client died: {held}\n{log_tail(srv)}"
    sd = spool_dir(srv)
    assert not sd.exists() or list(sd.iterdir()) == []
    expect_error(404, None, c.head_object, Bucket=bucket, Key="dead")
    visible = [p for p in files_under(srv.data_dir) if not p.startswith(".s3serve/")]
    assert visible == [f"{bucket}/keep"], visible
    assert all_keys(c, bucket) == ["keep"]
    assert srv.proc.poll() is None


# --------------------------------------------------------------------------------------------
# 6. A body larger than the free space


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs (needs root); unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@local_only("free space is the spool's ($TMPDIR), not the served directory's")
def test_put_larger_than_free_space_is_refused_at_once(start_server, small_fs):
    srv = start_server(data_dir=small_fs)
    try:
        c = srv.client()
        bucket = unique_bucket_name("full")
        c.create_bucket(Bucket=bucket)
        size = 32 * MiB
        # Raw: the 507 comes from the head alone, without a byte of the body sent and
        # without a 100 Continue before it.
        with connect(srv) as s:
            s.sendall(put_head(srv, f"/{bucket}/big", size, expect=True))
            status, headers, body, _ = read_response(s)
            assert status.startswith("HTTP/1.1 507"), (status, body[:500])
            assert xml_error_code(body) == "InsufficientStorage", body
        # boto3 (a file-like body, so Expect: 100-continue).
        with pytest.raises(ClientError) as ei:
            c.put_object(Bucket=bucket, Key="big", Body=io.BytesIO(os.urandom(size)))
        assert err(ei) == (507, "InsufficientStorage")
        expect_error(404, None, c.head_object, Bucket=bucket, Key="big")
        # Smaller bodies still go: one kept in memory, one spooled.
        c.put_object(Bucket=bucket, Key="small", Body=b"s" * 4096)
        mid = os.urandom(MiB)
        c.put_object(Bucket=bucket, Key="mid", Body=mid)
        assert c.get_object(Bucket=bucket, Key="small")["Body"].read() == b"s" * 4096
        assert c.get_object(Bucket=bucket, Key="mid")["Body"].read() == mid
        assert all_keys(c, bucket) == ["mid", "small"]
    finally:
        srv.stop()  # before the unmount
