"""Fixtures and helpers for the real-client suite (boto3 and the aws cli).

The suite starts s3serve itself: a session-wide default server, plus a factory
for extra servers with other flags. Set S3SERVE_BIN to choose the binary, or
S3SERVE_RCLONE=1 to run the suite against the reference `rclone serve s3` (RCLONE_BIN)
(useful to debug the suite; rclone fails many tests on purpose).

Tests import the helpers below with `from conftest import ...` (pytest puts
this directory on sys.path because it has no __init__.py).
"""

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RCLONE = os.environ.get("RCLONE_BIN", str(REPO / ".tools" / "rclone"))
USE_RCLONE = os.environ.get("S3SERVE_RCLONE", "") not in ("", "0")
S3SERVE_BIN = os.environ.get("S3SERVE_BIN", str(REPO / "target" / "release" / "s3serve"))
AWS_BIN = os.environ.get("S3SERVE_AWS_BIN", str(REPO / ".venv" / "bin" / "aws"))

# S3SERVE_UPSTREAM=s3serve or =rclone: every server is a gateway (s3serve serving an
# `:s3,...:` remote) in front of that upstream, which serves the data directory.
UPSTREAM = "" if USE_RCLONE else os.environ.get("S3SERVE_UPSTREAM", "")
# S3SERVE_GATEWAY_CACHE=writes or =full (with S3SERVE_UPSTREAM): the gateway caches with that
# --vfs-cache-mode, writing back after S3SERVE_GATEWAY_WRITE_BACK (default 0s: before the answer,
# so tests that look at the upstream's directory right after a write see it).
GATEWAY_CACHE = os.environ.get("S3SERVE_GATEWAY_CACHE", "") if UPSTREAM else ""
GATEWAY_WRITE_BACK = os.environ.get("S3SERVE_GATEWAY_WRITE_BACK", "0s")

AK, SK = "AKID", "SECRET"
UPSTREAM_AK, UPSTREAM_SK = "UPSTREAMKEY", "UPSTREAMSECRET"
AK2, SK2 = "AKIDTWO", "SECRETTWO"
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
S3NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# Keep any user AWS configuration out of the boto3 clients made in this process.
_AWS_SANDBOX = Path(tempfile.mkdtemp(prefix="s3serve-awsenv-"))
for _v in list(os.environ):
    if _v.startswith("AWS_"):
        del os.environ[_v]
os.environ["AWS_CONFIG_FILE"] = str(_AWS_SANDBOX / "config")
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(_AWS_SANDBOX / "credentials")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "multipart: needs multipart upload support (deselect with -m 'not multipart')"
    )


def pytest_report_header(config):
    server = f"rclone serve s3 ({RCLONE})" if USE_RCLONE else S3SERVE_BIN
    if UPSTREAM:
        server += f", a gateway in front of {UPSTREAM}"
    if GATEWAY_CACHE:
        server += f" with --vfs-cache-mode {GATEWAY_CACHE} (write-back {GATEWAY_WRITE_BACK})"
    return f"s3serve clients suite: server = {server}"


# --------------------------------------------------------------------------------------------
# Server management


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """One running server process over DATA_DIR."""

    def __init__(self, data_dir, flags=(), auth=((AK, SK),), workdir=None, preexec=None, env=None):
        self.data_dir = Path(data_dir)
        self.flags = list(flags)
        self.auth = list(auth) if auth else []
        self.port = free_port()
        self.host = "127.0.0.1"
        scheme = "https" if "--cert" in self.flags else "http"
        self.url = f"{scheme}://{self.host}:{self.port}"
        workdir = Path(workdir or tempfile.mkdtemp(prefix="s3serve-srv-"))
        self.log_path = workdir / f"server-{self.port}.log"
        if USE_RCLONE:
            cmd = [RCLONE, "serve", "s3"]
        else:
            cmd = [S3SERVE_BIN]
        cmd += ["--addr", f"127.0.0.1:{self.port}"]
        for ak, sk in self.auth:
            cmd += ["--auth-key", f"{ak},{sk}"]
        cmd += self.flags
        self.upstream = None
        # Where s3serve keeps multipart parts (`.s3serve/uploads` below it).
        self.uploads_root = self.data_dir
        if UPSTREAM:
            self.upstream = Upstream(UPSTREAM, self.data_dir, workdir)
            if GATEWAY_CACHE:
                cmd += ["--vfs-cache-mode", GATEWAY_CACHE, "--vfs-write-back", GATEWAY_WRITE_BACK,
                        "--cache-dir", str(Path(workdir) / "cache")]
                # With a cache, multipart parts wait in the cache's own folder for the remote.
                self.uploads_root = Path(workdir) / "cache" / "s3serve" / ":s3"
            cmd.append(
                f":s3,provider=Other,endpoint='{self.upstream.url}',"
                f"access_key_id={UPSTREAM_AK},secret_access_key={UPSTREAM_SK}:"
            )
        else:
            # As given: a remote's connection string is not a path (`http://` must stay).
            cmd.append(str(data_dir))
        self.cmd = cmd
        # Flags come from the command line and ENV alone: RCLONE_* variables set flags.
        extra_env = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        env.update(extra_env)
        if USE_RCLONE:
            env["RCLONE_CONFIG"] = str(workdir / "rclone.conf")
        self._log = open(self.log_path, "wb")
        if not USE_RCLONE and not os.path.exists(cmd[0]):
            pytest.fail(f"server binary {cmd[0]} not found: build it (cargo build --release) or set S3SERVE_BIN")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
        self._wait_ready()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self.upstream:
                    self.upstream.stop()
                pytest.fail(f"server exited with {self.proc.returncode} at start-up: {self.cmd}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        if self.upstream:
            self.upstream.stop()
        pytest.fail(f"server did not accept connections within {timeout}s: {self.cmd}\n{self.log()}")

    def stop(self, timeout=20.0):
        """SIGTERM, then wait. Returns the exit code."""
        terminate(self.proc, timeout)
        self._log.close()
        if self.upstream:
            self.upstream.stop()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        if self.upstream:
            self.upstream.stop()

    def client(self, ak=AK, sk=SK, region=REGION, **config):
        return make_client(self.url, ak, sk, region, **config)

    def anon_client(self):
        return make_client(self.url, None, None, REGION, signature_version=UNSIGNED)

    def bucket_path(self, bucket):
        return self.data_dir / bucket


class Upstream:
    """The S3 server a gateway fronts: s3serve or the reference rclone serve s3 on DATA_DIR."""

    def __init__(self, kind, data_dir, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = {"s3serve": S3SERVE_BIN, "rclone": RCLONE}[kind]
        cmd = [binary] + (["serve", "s3"] if kind == "rclone" else [])
        cmd += ["--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{UPSTREAM_AK},{UPSTREAM_SK}"]
        cmd.append(str(data_dir))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        env["RCLONE_CONFIG"] = str(Path(workdir) / "upstream-rclone.conf")
        self.log_path = Path(workdir) / f"upstream-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"upstream exited at start-up: {cmd}\n{self.log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"upstream did not start: {cmd}")

    def stop(self):
        terminate(self.proc)
        self._log.close()


def terminate(proc, timeout=20.0):
    """SIGTERM, wait, and SIGKILL if it has not ended within timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def upstream_cannot(kinds, why):
    """Marks a test that the named upstreams (S3SERVE_UPSTREAM values) cannot pass through a
    gateway, saying what they lack."""
    return pytest.mark.skipif(UPSTREAM in kinds.split(), reason=f"{UPSTREAM} as the upstream: {why}")


def cache_cannot(why):
    """Marks a test that cannot hold through a gateway with a cache (S3SERVE_GATEWAY_CACHE),
    saying why."""
    return pytest.mark.skipif(bool(GATEWAY_CACHE), reason=f"--vfs-cache-mode {GATEWAY_CACHE}: {why}")


def local_only(why):
    """Marks a test that cannot hold through a gateway (S3SERVE_UPSTREAM set), saying why."""
    return pytest.mark.skipif(bool(UPSTREAM), reason=f"not through a gateway: {why}")


def make_client(url, ak=AK, sk=SK, region=REGION, verify=None, **config):
    s3cfg = config.pop("s3", {})
    s3cfg.setdefault("addressing_style", "path")
    cfg = Config(
        s3=s3cfg,
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        **config,
    )
    kw = {}
    if verify is not None:
        kw["verify"] = verify
    if ak is not None:
        kw.update(aws_access_key_id=ak, aws_secret_access_key=sk)
    return boto3.session.Session().client("s3", endpoint_url=url, region_name=region, config=cfg, **kw)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("s3serve")


@pytest.fixture(scope="session")
def server(session_tmp):
    data = session_tmp / "data"
    data.mkdir()
    srv = Server(data, workdir=session_tmp)
    yield srv
    alive = srv.proc.poll() is None
    srv.stop()
    check_server_health(srv, alive)


def check_server_health(srv, alive):
    """Fail (as a teardown error) if the server died under the tests or logged a panic."""
    log = srv.log()
    if not alive:
        pytest.fail(f"server {srv.url} died during the tests (exit {srv.proc.returncode}):\n{log[-4000:]}")
    if "panicked at" in log:
        pytest.fail(f"server {srv.url} logged a panic:\n{log[-4000:]}")


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(*flags, data_dir=None, auth=((AK, SK),), env=None) -> Server.

    auth=None starts an anonymous server; env adds environment variables. Servers are stopped when the test ends.
    data_dir defaults to a fresh tmp_path/'data' (created), which lies inside tmp_path so that
    tests can check nothing was written next to it.
    """
    started = []

    def start(*flags, data_dir=None, auth=((AK, SK),), preexec=None, env=None):
        if data_dir is None:
            data_dir = tmp_path / "data"
            data_dir.mkdir(exist_ok=True)
        srv = Server(data_dir, flags, auth, workdir=tmp_path, preexec=preexec, env=env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            srv.stop()
        elif srv.upstream:
            # A test killed the gateway itself: its upstream is still to be stopped.
            srv.upstream.stop()
    for srv in started:
        if "panicked at" in srv.log():
            pytest.fail(f"server {srv.url} logged a panic:\n{srv.log()[-4000:]}")


@pytest.fixture
def vhost_domain(monkeypatch):
    """Resolves s3.test and every name under it to 127.0.0.1 in this process, for
    virtual-hosted-style requests (`bucket.s3.test`); returns the domain."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and (host == "s3.test" or host.endswith(".s3.test")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return "s3.test"


@pytest.fixture(scope="session")
def s3(server):
    return server.client()


@pytest.fixture(scope="session")
def data_dir(server):
    return server.data_dir


_bucket_counter = itertools.count(1)


def unique_bucket_name(hint=""):
    hint = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:30].strip("-")
    name = f"t{next(_bucket_counter)}-{hint}-{uuid.uuid4().hex[:8]}" if hint else f"t-{uuid.uuid4().hex[:16]}"
    return name[:63]


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket on the default server, unique to this test."""
    name = unique_bucket_name(request.node.name.replace("test_", "", 1))
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket2(s3, request):
    name = unique_bucket_name("two-" + request.node.name.replace("test_", "", 1))
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bpath(data_dir, bucket):
    """The bucket's directory on disk."""
    return data_dir / bucket


# --------------------------------------------------------------------------------------------
# Small helpers


def md5hex(data):
    return hashlib.md5(data).hexdigest()


def md5b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def quoted_md5(data):
    return f'"{md5hex(data)}"'


def err(excinfo):
    """(status, code) of a botocore ClientError (pytest ExceptionInfo or the exception)."""
    e = getattr(excinfo, "value", excinfo)
    assert isinstance(e, ClientError), f"expected ClientError, got {e!r}"
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response.get("Error", {}).get("Code")


def expect_error(status, code, fn, *args, **kwargs):
    """Call fn, which must fail with this HTTP status and S3 error code (code None: don't check)."""
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    got = err(ei)
    if code is None:
        assert got[0] == status, f"expected HTTP {status}, got {got}"
    else:
        assert got == (status, code), f"expected {(status, code)}, got {got}"
    return ei.value


def headers_of(resp):
    """Lower-cased response headers of a boto3 response dict."""
    return resp["ResponseMetadata"]["HTTPHeaders"]


def status_of(resp):
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def put(s3, bucket, key, body=b"", **kw):
    return s3.put_object(Bucket=bucket, Key=key, Body=body, **kw)


def get_bytes(s3, bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def list_all_keys_v2(s3, bucket, **kw):
    keys, token = [], None
    while True:
        args = dict(kw)
        if token:
            args["ContinuationToken"] = token
        r = s3.list_objects_v2(Bucket=bucket, **args)
        keys += [c["Key"] for c in r.get("Contents", [])]
        if not r["IsTruncated"]:
            return keys
        token = r["NextContinuationToken"]


def files_under(root):
    """Every regular file under root, as sorted relative posix paths."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def visible_entries(root):
    """Files and dirs under root, relative, excluding anything whose name starts with .s3serve."""
    root = Path(root)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".s3serve") for part in rel.parts):
            continue
        out.append(rel.as_posix() + ("/" if p.is_dir() else ""))
    return sorted(out)


def poll(fn, timeout=10.0, interval=0.05):
    """Return fn()'s first truthy result, or its last result after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r or time.monotonic() > deadline:
            return r
        time.sleep(interval)


def http_date(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


# --------------------------------------------------------------------------------------------
# Raw HTTP with our own SigV4 signer (full control over path, date and payload hash)


def _uri_encode(s, safe=""):
    return quote(s, safe="-_.~" + safe)


def _sigv4_key(secret, date, region):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def canonical_uri(path):
    """S3's canonical URI: percent-decode the path once, re-encode everything but unreserved and '/'."""
    return quote(unquote_to_bytes(path), safe="/~")


def _canonical_query(pairs):
    enc = sorted((_uri_encode(k), _uri_encode(v if v is not None else "")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in enc)


def _wire_query(pairs):
    out = []
    for k, v in pairs:
        out.append(_uri_encode(k) if v is None else f"{_uri_encode(k)}={_uri_encode(v)}")
    return "&".join(out)


def _query_pairs(query):
    if not query:
        return []
    if isinstance(query, dict):
        return list(query.items())
    return list(query)


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.header_list = headers  # [(name as sent, value)]
        self.body = body

    def header(self, name, default=None):
        for k, v in self.header_list:
            if k.lower() == name.lower():
                return v
        return default

    def header_names(self):
        return [k for k, _ in self.header_list]

    @property
    def code(self):
        return xml_error_code(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.body[:300]!r}>"


def xml_error_code(body):
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    el = root.find("Code")
    if el is None:
        el = root.find(S3NS + "Code")
    return el.text if el is not None else None


def xml_strip_ns(body):
    root = ET.fromstring(body)
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def sign_headers(method, path, query_pairs, headers, payload_hash, ak, sk, region=REGION, when=None, host=None):
    """Return headers + Authorization for a SigV4 header-signed request. path is already encoded."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    h = {k.lower(): str(v) for k, v in headers.items()}
    h["host"] = host
    h["x-amz-date"] = amz_date
    h["x-amz-content-sha256"] = payload_hash
    signed = sorted(h)
    canon_headers = "".join(f"{k}:{' '.join(h[k].split())}\n" for k in signed)
    creq = "\n".join(
        [method, canonical_uri(path), _canonical_query(query_pairs), canon_headers, ";".join(signed), payload_hash]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(_sigv4_key(sk, date, region), sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return h


def presign_url(server, method, path, expires=300, when=None, ak=AK, sk=SK, region=REGION, extra_query=()):
    """A SigV4 presigned URL (path already encoded), signing only host."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    host = f"{server.host}:{server.port}"
    pairs = list(extra_query) + [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{ak}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    creq = "\n".join([method, canonical_uri(path), _canonical_query(pairs), f"host:{host}\n", "host",
                       "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(_sigv4_key(sk, date, region), sts.encode(), hashlib.sha256).hexdigest()
    pairs.append(("X-Amz-Signature", sig))
    return f"{server.url}{path}?{_wire_query(pairs)}"


def raw_request(server, method, path, query=None, headers=None, body=b"", sign=True, ak=AK, sk=SK,
                payload_hash=None, when=None, region=REGION, timeout=30):
    """Send one request with http.client, exactly as given.

    path: the request path, already percent-encoded (sent and signed verbatim, no normalisation).
    query: dict or list of (name, value) pairs; value None means a bare `?name`.
    payload_hash: the x-amz-content-sha256 value to send and sign (default: the real SHA-256).
    """
    pairs = _query_pairs(query)
    target = path + ("?" + _wire_query(pairs) if pairs else "")
    host = f"{server.host}:{server.port}"
    hdrs = dict(headers or {})
    if body is None:
        body = b""
    if sign:
        ph = payload_hash if payload_hash is not None else hashlib.sha256(body).hexdigest()
        hdrs = sign_headers(method, path, pairs, hdrs, ph, ak, sk, region=region, when=when, host=host)
    else:
        hdrs = {k.lower(): v for k, v in hdrs.items()}
        hdrs["host"] = host
    if (body or method in ("PUT", "POST")) and "transfer-encoding" not in hdrs:
        hdrs.setdefault("content-length", str(len(body)))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


def key_path(key):
    """Encode an object key for a path the way S3 clients do."""
    return quote(key, safe="/~")


# --------------------------------------------------------------------------------------------
# aws cli


@pytest.fixture(scope="session")
def aws_env(session_tmp):
    home = session_tmp / "awshome"
    home.mkdir()
    (home / "config").write_text("[default]\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_ACCESS_KEY_ID": AK,
        "AWS_SECRET_ACCESS_KEY": SK,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }
    return env


@pytest.fixture(scope="session")
def aws(server, aws_env):
    """aws(*args, check=True, cwd=None, url=None) -> CompletedProcess, against the default server."""

    def run(*args, check=True, cwd=None, url=None, timeout=300):
        cmd = [AWS_BIN, "--endpoint-url", url or server.url] + [str(a) for a in args]
        p = subprocess.run(cmd, env=aws_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    return run
