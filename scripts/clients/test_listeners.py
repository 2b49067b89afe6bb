"""The front of the server: TLS and mutual TLS, header limits, slow and stalled clients,
framing errors, the descriptor limit, and SIGHUP. Certificates are made here with openssl."""

import concurrent.futures
import ctypes
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from botocore.config import Config

from conftest import AK, SK, USE_RCLONE, make_client, poll, unique_bucket_name

pytestmark = pytest.mark.skipif(USE_RCLONE, reason="s3serve's own front")


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}")
    return d / f"{name}.crt"


# How each kind of key is made, and the PEM label that proves its format.
KEYS = {
    "rsa-pkcs8": (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "BEGIN PRIVATE KEY"),
    "rsa-pkcs1": (["genrsa", "-traditional"], "BEGIN RSA PRIVATE KEY"),
    "ecdsa-sec1": (["ecparam", "-name", "prime256v1", "-genkey", "-noout"], "BEGIN EC PRIVATE KEY"),
    "ecdsa-pkcs8": (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "BEGIN PRIVATE KEY"),
    "ed25519": (["genpkey", "-algorithm", "ed25519"], "BEGIN PRIVATE KEY"),
}


def make_leaf(d, name, ca, kind="ecdsa-sec1", usage="serverAuth"):
    """A certificate for 127.0.0.1/localhost signed by `ca`; returns (cert, key)."""
    cmd, label = KEYS[kind]
    openssl(d, *cmd, "-out", f"{name}.key")
    assert label in (d / f"{name}.key").read_text()
    openssl(d, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    (d / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        f"extendedKeyUsage={usage}\n")
    ca_name = ca.stem
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.crt", "-CAkey", f"{ca_name}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return d / f"{name}.crt", d / f"{name}.key"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return d


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-s", "-S", "-o", "-", "-w", "\n%{http_code}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", list(KEYS))
def test_https_with_boto3_and_curl(start_server, pki, kind):
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca, kind)
    srv = start_server("--cert", cert, "--key", key)
    assert srv.url.startswith("https://")
    c = srv.client(verify=str(ca))
    bucket = unique_bucket_name("tls")
    c.create_bucket(Bucket=bucket)
    data = os.urandom(3 * 1024 * 1024 + 11)
    c.put_object(Bucket=bucket, Key="k", Body=data)
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    r = curl("--cacert", ca, f"{srv.url}/{bucket}/k")
    # curl is unsigned: refused, but over a verified TLS connection with an S3 error.
    assert r.stdout.endswith("\n403"), r.stderr
    assert "<Code>AccessDenied</Code>" in r.stdout
    # A client that does not trust the CA fails the handshake.
    r = curl(f"{srv.url}/")
    assert r.returncode != 0 and r.stdout.endswith("000")


def test_plain_http_to_a_tls_port_gets_nothing_and_the_server_lives(start_server, pki):
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    srv = start_server("--cert", cert, "--key", key, auth=None)
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = s.recv(100)
        assert not got.startswith(b"HTTP/")
    assert curl("--cacert", ca, f"{srv.url}/").stdout.endswith("\n200")


def test_http_prefix_keeps_a_listener_plain_next_to_tls(start_server, pki, tmp_path):
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    from conftest import free_port
    plain = free_port()
    srv = start_server("--cert", cert, "--key", key, "--addr", f"http://127.0.0.1:{plain}", auth=None)
    assert curl("--cacert", ca, f"{srv.url}/").stdout.endswith("\n200")
    assert curl(f"http://127.0.0.1:{plain}/").stdout.endswith("\n200")


def test_mutual_tls(start_server, pki):
    ca = make_ca(pki, "ca")
    client_ca = make_ca(pki, "clientca")
    other_ca = make_ca(pki, "otherca")
    cert, key = make_leaf(pki, "server", ca, "rsa-pkcs1")
    ccert, ckey = make_leaf(pki, "client", client_ca, "ecdsa-pkcs8", usage="clientAuth")
    bcert, bkey = make_leaf(pki, "intruder", other_ca, "ecdsa-pkcs8", usage="clientAuth")
    srv = start_server("--cert", cert, "--key", key, "--client-ca", client_ca)
    # No certificate, or one from another CA: refused during the handshake, no HTTP at all.
    for extra in ([], ["--cert", bcert, "--key", bkey]):
        r = curl("--cacert", ca, *extra, f"{srv.url}/")
        assert r.returncode != 0, r.stdout
        assert r.stdout.endswith("000")
    # With a certificate from the client CA: served (curl is unsigned, so 403 from S3).
    r = curl("--cacert", ca, "--cert", ccert, "--key", ckey, f"{srv.url}/")
    assert r.stdout.endswith("\n403"), r.stderr
    c = srv.client(verify=str(ca), client_cert=(str(ccert), str(ckey)))
    bucket = unique_bucket_name("mtls")
    c.create_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="k", Body=b"hello")
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hello"
    bad = srv.client(verify=str(ca))
    with pytest.raises(Exception):
        bad.list_buckets()


def test_refused_client_certificates_are_logged_and_the_readme_recipe_works(start_server, pki):
    """A v1 client certificate, made the way most guides show, fails the handshake: the log
    names the client and the reason. The README's recipe makes one that works."""
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    # The README's recipe, step by step.
    openssl(pki, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "clients-ca.key",
            "-out", "clients-ca.pem", "-days", "3650", "-subj", "/CN=s3serve clients")
    openssl(pki, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "alice.key", "-out", "alice.csr",
            "-subj", "/CN=alice")
    (pki / "client.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                                    "extendedKeyUsage=clientAuth\n")
    openssl(pki, "x509", "-req", "-in", "alice.csr", "-CA", "clients-ca.pem", "-CAkey", "clients-ca.key",
            "-CAcreateserial", "-days", "825", "-extfile", "client.ext", "-out", "alice.pem")
    # The guides' way: no extension file, so an X.509 v1 certificate.
    openssl(pki, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "bob.key", "-out", "bob.csr",
            "-subj", "/CN=bob")
    openssl(pki, "x509", "-req", "-in", "bob.csr", "-CA", "clients-ca.pem", "-CAkey", "clients-ca.key",
            "-CAcreateserial", "-days", "825", "-out", "bob.pem")
    text = subprocess.run(["openssl", "x509", "-in", pki / "bob.pem", "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "Version: 1 (0x0)" in text
    srv = start_server("--cert", cert, "--key", key, "--client-ca", pki / "clients-ca.pem")
    r = curl("--cacert", ca, "--cert", pki / "bob.pem", "--key", pki / "bob.key", f"{srv.url}/")
    assert r.returncode != 0 and r.stdout.endswith("000"), r
    r = curl("--cacert", ca, f"{srv.url}/")
    assert r.returncode != 0 and r.stdout.endswith("000"), r
    log = poll(lambda: srv.log() if srv.log().count("TLS handshake with 127.0.0.1:") >= 2 else "")
    assert "client certificate was refused: it is an X.509 v1 certificate" in log, log
    assert "the client sent no certificate" in log, log
    assert re.search(r"TLS handshake with 127\.0\.0\.1:\d+ failed", log), log
    # The v3 certificate from the recipe is accepted, by curl and by boto3.
    r = curl("--cacert", ca, "--cert", pki / "alice.pem", "--key", pki / "alice.key", f"{srv.url}/")
    assert r.stdout.endswith("\n403"), r  # unsigned, so S3 refuses it after the handshake
    c = srv.client(verify=str(ca), client_cert=(str(pki / "alice.pem"), str(pki / "alice.key")))
    b = unique_bucket_name("alice")
    c.create_bucket(Bucket=b)
    assert b in [x["Name"] for x in c.list_buckets()["Buckets"]]


def test_min_tls_version(start_server, pki):
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    srv = start_server("--cert", cert, "--key", key, "--min-tls-version", "tls1.3", auth=None)
    assert curl("--cacert", ca, "--tls-max", "1.2", f"{srv.url}/").returncode != 0
    assert curl("--cacert", ca, "--tlsv1.3", f"{srv.url}/").stdout.endswith("\n200")
    old = start_server("--cert", cert, "--key", key, "--min-tls-version", "tls1.0", auth=None)
    assert "TLS 1.0 and 1.1 are not available" in old.log()
    # rclone's default is tls1.0 too, but a default nobody asked for is no reason to warn.
    plain = start_server("--cert", cert, "--key", key, auth=None)
    assert poll(lambda: "listening on https://" in plain.log())
    assert "not available" not in plain.log()
    assert curl("--cacert", ca, "--tls-max", "1.2", f"{old.url}/").stdout.endswith("\n200")


def test_bad_pem_files_are_start_up_errors_naming_the_file(tmp_path, pki):
    from conftest import S3SERVE_BIN
    ca = make_ca(pki, "ca")
    cert, key = make_leaf(pki, "server", ca)
    junk = pki / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    empty = pki / "empty.pem"
    empty.write_text("")
    cases = [
        (["--cert", junk, "--key", key], "junk.pem"),
        (["--cert", empty, "--key", key], "empty.pem"),
        (["--cert", cert, "--key", empty], "empty.pem"),
        (["--cert", cert, "--key", pki / "missing.key"], "missing.key"),
        (["--cert", cert, "--key", key, "--client-ca", junk], "junk.pem"),
        (["--cert", ca, "--key", key], "KeyMismatch"),  # the key does not match the cert
    ]
    for flags, name in cases:
        p = subprocess.run([S3SERVE_BIN, "--addr", "127.0.0.1:0", *map(str, flags), str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (flags, p.stderr)
        assert name in p.stderr, p.stderr
        assert "panicked" not in p.stderr


def read_to_close(s):
    """Everything the server sends on `s` until it closes the connection."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def raw(srv, data, timeout=10):
    """Sends bytes on a fresh connection and reads until the server closes."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(data)
        return read_to_close(s)


def test_max_header_bytes_answers_431(start_server):
    srv = start_server("--max-header-bytes", "1000", auth=None)
    # As in Go's server (and so rclone), the limit allows 4 KiB on top of the value.
    limit = 1000 + 4096

    def head_of(size):
        line = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        pad = size - len(line) - len("X-Pad: \r\n\r\n")
        return (line + "X-Pad: " + "a" * pad + "\r\n\r\n").encode()

    ok = raw(srv, head_of(limit - 200))
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    big = raw(srv, head_of(limit + 200))
    assert big.startswith(b"HTTP/1.1 431"), big[:200]
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in big
    # A head that never ends is refused once it passes the limit, without waiting for it.
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nX-Endless: " + b"b" * (limit + 10))
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    assert raw(srv, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("lengths", [
    ["5", "6"],
    ["5, 6"],
    ["-1"],
    ["abc"],
    ["5\r\nTransfer-Encoding: chunked"],
])
def test_invalid_or_conflicting_content_length_is_400_and_closes(start_server, lengths):
    srv = start_server(auth=None)
    head = "PUT /b/k HTTP/1.1\r\nHost: x\r\n" + "".join(f"Content-Length: {v}\r\n" for v in lengths)
    # Whatever follows must not be read as a second request.
    smuggled = b"hello" + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    out = raw(srv, head.encode() + b"\r\n" + smuggled)
    assert out.startswith(b"HTTP/1.1 400"), out[:300]
    assert out.count(b"HTTP/1.1") == 1, out
    assert b"<Code>InvalidRequest</Code>" in out


def test_slow_headers_pin_no_worker(start_server):
    """More byte-a-while clients than workers: normal requests are still served, and with
    a short idle timeout the slow clients are dropped."""
    srv = start_server("--workers", "2", "--idle-timeout", "2s", auth=None)
    slow = []
    for _ in range(8):
        s = socket.create_connection((srv.host, srv.port), timeout=30)
        s.sendall(b"GET / HTTP/1.1\r\nHo")
        slow.append(s)
    for _ in range(5):
        assert raw(srv, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    for s in slow:
        s.sendall(b"s")  # still trickling
    # Each slow connection is closed by the server (its head never completes in time).
    for s in slow:
        assert s.recv(100) == b""
        s.close()


def test_a_stalled_body_is_cut_off_and_leaves_nothing(start_server):
    srv = start_server("--workers", "2", "--idle-timeout", "2s", auth=None)
    c = srv.anon_client()
    bucket = unique_bucket_name("stall")
    c.create_bucket(Bucket=bucket)
    stalled = []
    for i in range(4):
        s = socket.create_connection((srv.host, srv.port), timeout=30)
        s.sendall(f"PUT /{bucket}/big{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\npartial".encode())
        stalled.append(s)
    # Workers blocked on the stalled bodies are freed; other requests go on.
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    for s in stalled:
        read_to_close(s)  # the relay cuts the stalled body off
        s.close()
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert not list((srv.data_dir / bucket).iterdir())


def test_more_clients_than_descriptors(start_server):
    """Under `ulimit -n 64` a crowd of clients queues instead of breaking the server."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    srv = start_server("--workers", "4", auth=None, preexec=limit)
    socks = []
    for _ in range(150):
        s = socket.create_connection((srv.host, srv.port), timeout=60)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = read_to_close(s)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        s.close()
    c = srv.anon_client()
    bucket = unique_bucket_name("fds")
    c.create_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="k", Body=b"x" * 100000)
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 100000
    assert srv.proc.poll() is None


def test_unix_socket_skips_auth_but_tcp_does_not(start_server, tmp_path):
    sock = tmp_path / "s3.sock"
    srv = start_server("--addr", f"unix://{sock}")
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", str(sock),
                        "-X", "PUT", "http://localhost/sockbucket"], capture_output=True, text=True, timeout=30)
    assert r.stdout == "200"
    assert (srv.data_dir / "sockbucket").is_dir()
    assert curl(f"{srv.url}/").stdout.endswith("\n403")
    # A client cannot claim to be on the unix socket by sending the relay's header.
    r = curl("-H", "x-s3serve-relay: forged 1 1 unix", f"{srv.url}/")
    assert r.stdout.endswith("\n403")
    # Also one longer than the header the relay puts in its place.
    r = curl("-H", "x-s3serve-relay: " + "f" * 400 + " 1 1 0 unix", f"{srv.url}/")
    assert r.stdout.endswith("\n403")


def test_sighup_reopens_the_log_file(start_server, tmp_path):
    log = tmp_path / "s3serve.log"
    srv = start_server("--log-file", log, "-v", auth=None)
    c = srv.anon_client()
    c.list_buckets()
    rotated = tmp_path / "s3serve.log.1"
    log.rename(rotated)
    srv.proc.send_signal(signal.SIGHUP)
    # SIGHUP is handled asynchronously: poll for the new file rather than sleeping a fixed time.
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        c.list_buckets()
        time.sleep(0.05)
    c.list_buckets()
    assert "ListBuckets" in log.read_text()
    assert "ListBuckets" in rotated.read_text()
    assert srv.stop() == 0


def test_server_read_timeout_bounds_a_trickled_body(start_server):
    """A body that keeps trickling (never idle long) still has --server-read-timeout to
    arrive in full; past it the connection is cut and nothing is stored."""
    srv = start_server("--server-read-timeout", "1s", "--idle-timeout", "30s", auth=None)
    c = srv.anon_client()
    bucket = unique_bucket_name("rto")
    c.create_bucket(Bucket=bucket)
    with socket.create_connection((srv.host, srv.port), timeout=60) as s:
        s.sendall(f"PUT /{bucket}/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
        cut = False
        for _ in range(200):  # at most 20 s of trickling
            try:
                s.sendall(b"x")
            except OSError:
                cut = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    cut = True
                    break
            except socket.timeout:
                pass
        assert cut, "the trickled upload was never cut off"
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert not list((srv.data_dir / bucket).iterdir())


def test_a_client_that_does_not_read_is_cut_off(start_server):
    """A GET whose client reads nothing: the answer stops after --idle-timeout, the rest is
    never sent, and the server goes on serving."""
    srv = start_server("--idle-timeout", "1s", auth=None)
    c = srv.anon_client()
    bucket = unique_bucket_name("slowread")
    c.create_bucket(Bucket=bucket)
    size = 64 * 1024 * 1024
    c.put_object(Bucket=bucket, Key="big", Body=b"z" * size)
    with socket.create_connection((srv.host, srv.port), timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /{bucket}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(5)  # well past the 1 s limit: the server has given up on this reader
        got = len(read_to_close(s))
    assert got < size, "the whole object went to a client that was not reading"
    assert c.head_object(Bucket=bucket, Key="big")["ContentLength"] == size


def test_server_write_timeout_bounds_a_slowly_read_answer(start_server):
    """A client that keeps reading, a little at a time (never idle long), still has
    --server-write-timeout to take the whole answer; past it the connection is cut."""
    srv = start_server("--server-write-timeout", "1s", "--idle-timeout", "30s", auth=None)
    c = srv.anon_client()
    bucket = unique_bucket_name("wto")
    c.create_bucket(Bucket=bucket)
    size = 64 * 1024 * 1024
    c.put_object(Bucket=bucket, Key="big", Body=b"w" * size)
    got = 0
    with socket.create_connection((srv.host, srv.port), timeout=60) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /{bucket}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        cut = False
        for _ in range(400):  # at most about 20 s of slow reading
            try:
                chunk = s.recv(16 * 1024)
            except ConnectionResetError:
                cut = True
                break
            if not chunk:
                cut = True
                break
            got += len(chunk)
            time.sleep(0.05)
        assert cut, "the slow reader was never cut off"
    assert got < size, "the whole object went out past --server-write-timeout"
    assert c.head_object(Bucket=bucket, Key="big")["ContentLength"] == size


def _steal_fd(pid, fd):
    """A duplicate of another process's descriptor (pidfd_getfd; we are its parent)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
        if got < 0:
            pytest.skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
        return got
    finally:
        os.close(pidfd)


def _inner_listener_fd(pid):
    """The server's descriptor for the listening end of its internal request socket."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        # Flags 00010000 mark a listening socket.
        if len(parts) >= 8 and parts[7].endswith("/requests.sock") and parts[3] == "00010000":
            inodes.add(parts[6])
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return int(entry.name)
    return None


def test_a_dead_request_queue_is_rebuilt(start_server):
    """tiny_http's accept loop ends for good on any accept error. Breaking its listener (a
    shut-down listening socket fails accept with EINVAL) must not stop the server: a new
    queue is started, and old and new connections go on being answered."""
    srv = start_server("--workers", "2", auth=None)
    c = srv.anon_client()
    bucket = unique_bucket_name("queue")
    c.create_bucket(Bucket=bucket)
    fd = _inner_listener_fd(srv.proc.pid)
    assert fd is not None, "no internal request socket found"
    stolen = socket.socket(fileno=_steal_fd(srv.proc.pid, fd))
    stolen.shutdown(socket.SHUT_RDWR)
    stolen.close()
    poll(lambda: "the request queue failed" in srv.log())
    # Many clients at once, so that relays must open new connections to the new queue.
    clients = [srv.anon_client() for _ in range(16)]
    def one(i):
        cl = clients[i % 16]
        cl.put_object(Bucket=bucket, Key=f"k{i}", Body=b"v" * i)
        return cl.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == b"v" * i
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert all(ex.map(one, range(64)))
    assert c.list_objects_v2(Bucket=bucket)["KeyCount"] == 64
