"""--auth-proxy: a program maps each access key ID to its secret and its backend (local
directories and an S3 upstream here), driven by boto3 and the aws cli. Users see only their
own storage; on a shared directory their multipart uploads and metadata stay their own;
answers are cached, asked again after the period, and asked afresh for a rotated secret; a
program that crashes, hangs or prints garbage gives 503 without harming other users; 50
concurrent first requests run the program once."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import (AWS_BIN, S3SERVE_BIN, UPSTREAM, USE_RCLONE, err, free_port, md5hex, poll,
                      terminate)

pytestmark = pytest.mark.skipif(bool(UPSTREAM) or USE_RCLONE,
                                reason="starts its own servers: once, on a directory, is enough")

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "auth_proxy_program.py"
EXAMPLE = HERE.parent / "auth-proxy" / "users-from-file.py"


class ProxyServer:
    """s3serve --auth-proxy PROGRAM (no PATH), with the users file the program reads."""

    def __init__(self, tmp, users, flags=(), env=None, program=PROGRAM):
        self.tmp = Path(tmp)
        self.users_path = self.tmp / "users.json"
        self.runs_path = self.tmp / "runs.log"
        self.set_users(users)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        proxy = f"{sys.executable} {program} {self.users_path}"
        if program == PROGRAM:
            proxy += f" {self.runs_path}"
        self.cmd = [S3SERVE_BIN, "--addr", f"127.0.0.1:{self.port}", "--auth-proxy", proxy, *flags]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        run_env.update(env or {})
        self.log_path = self.tmp / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=run_env)
        wait_for_port(self.proc, self.port, self.log)

    def set_users(self, users):
        tmp = self.users_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.replace(self.users_path)

    def runs(self):
        try:
            return [json.loads(l) for l in self.runs_path.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def log(self):
        return self.log_path.read_text(errors="replace")

    def client(self, ak, sk):
        """A boto3 client that makes one attempt per call: runs of the program are counted."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=ak,
            aws_secret_access_key=sk,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                          connect_timeout=5, read_timeout=60))

    def stop(self):
        terminate(self.proc)
        self._log.close()


def wait_for_port(proc, port, log):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} at start-up:\n{log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"did not start:\n{log()}")


@pytest.fixture
def proxied(tmp_path):
    """Factory: proxied(users, *flags, env=None, program=PROGRAM) -> ProxyServer."""
    started = []

    def start(users, *flags, env=None, program=PROGRAM):
        srv = ProxyServer(tmp_path, users, flags, env, program)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        alive = srv.proc.poll() is None
        srv.stop()
        assert alive, f"the server died:\n{srv.log()[-3000:]}"
        assert "panicked at" not in srv.log(), srv.log()[-3000:]


@pytest.fixture
def upstream(tmp_path):
    """A plain s3serve that one user's answer names as an S3 remote."""
    data = tmp_path / "upstream-data"
    data.mkdir()
    port = free_port()
    log_path = tmp_path / "upstream.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([S3SERVE_BIN, "--addr", f"127.0.0.1:{port}", "--auth-key", "UP,UPSECRET",
                             str(data)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(proc, port, lambda: log_path.read_text(errors="replace"))
    yield f"http://127.0.0.1:{port}", data
    terminate(proc)
    log.close()


def local(secret, root, **extra):
    return {"secret": secret, "type": "local", "_root": str(root), **extra}


def code_of(fn, *args, **kwargs):
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    return err(e)


def buckets(s3):
    return sorted(b["Name"] for b in s3.list_buckets()["Buckets"])


def test_each_user_sees_only_their_own_storage(proxied, upstream, tmp_path):
    up_url, up_data = upstream
    a_dir, b_dir = tmp_path / "alice", tmp_path / "bob"
    srv = proxied({
        "AKALICE": local("alice-secret", a_dir),
        "AKBOB": local("bob-secret", b_dir),
        "AKCAROL": {"secret": "carol-secret", "type": "s3", "_root": "", "provider": "Other",
                    "endpoint": up_url, "access_key_id": "UP", "secret_access_key": "UPSECRET"},
    })
    alice, bob = srv.client("AKALICE", "alice-secret"), srv.client("AKBOB", "bob-secret")
    carol = srv.client("AKCAROL", "carol-secret")
    alice.create_bucket(Bucket="alice-photos")
    alice.put_object(Bucket="alice-photos", Key="cat.jpg", Body=b"meow")
    bob.create_bucket(Bucket="bob-docs")
    carol.create_bucket(Bucket="carol-music")
    carol.put_object(Bucket="carol-music", Key="song.mp3", Body=b"la la")
    assert buckets(alice) == ["alice-photos"]
    assert buckets(bob) == ["bob-docs"]
    assert buckets(carol) == ["carol-music"]
    assert (a_dir / "alice-photos" / "cat.jpg").read_bytes() == b"meow"
    assert (up_data / "carol-music" / "song.mp3").read_bytes() == b"la la"
    assert not (b_dir / "alice-photos").exists()
    # Another user's bucket is not there for them, by name either.
    assert code_of(bob.get_object, Bucket="alice-photos", Key="cat.jpg")[1] == "NoSuchBucket"
    assert code_of(bob.put_object, Bucket="alice-photos", Key="x", Body=b"x")[1] == "NoSuchBucket"
    assert not (a_dir / "alice-photos" / "x").exists()
    # The program saw each access key ID, with the client's address and no port.
    runs = srv.runs()
    assert sorted({r["user"] for r in runs}) == ["AKALICE", "AKBOB", "AKCAROL"]
    assert all(r.get("client_ip") == "127.0.0.1" for r in runs), runs


def test_the_aws_cli_and_the_example_program(proxied, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    srv = proxied({"AKA": local("sa", a_dir), "AKB": local("sb", b_dir)}, program=EXAMPLE)

    def aws(ak, sk, *args, check=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "nocfg"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "nocreds"), AWS_MAX_ATTEMPTS="1")
        p = subprocess.run([AWS_BIN, "--endpoint-url", srv.url, *map(str, args)], env=env,
                           capture_output=True, text=True, timeout=120)
        if check:
            assert p.returncode == 0, p.stderr
        return p

    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(9 << 20))  # multipart for the cli
    aws("AKA", "sa", "s3", "mb", "s3://a-bucket")
    aws("AKA", "sa", "s3", "cp", src, "s3://a-bucket/report.pdf")
    assert (a_dir / "a-bucket" / "report.pdf").read_bytes() == src.read_bytes()
    assert "report.pdf" in aws("AKA", "sa", "s3", "ls", "s3://a-bucket").stdout
    assert aws("AKB", "sb", "s3", "ls").stdout.strip() == ""
    p = aws("AKB", "sb", "s3", "ls", "s3://a-bucket", check=False)
    assert p.returncode != 0 and "NoSuchBucket" in p.stderr
    p = aws("AKNOBODY", "sb", "s3", "ls", check=False)
    assert p.returncode != 0 and "InvalidAccessKeyId" in p.stderr
    p = aws("AKA", "wrong", "s3", "ls", check=False)
    assert p.returncode != 0 and "SignatureDoesNotMatch" in p.stderr


def test_shared_backend_keeps_uploads_and_metadata_private(proxied, tmp_path):
    shared = tmp_path / "family"
    srv = proxied({"AKMUM": local("mum-secret", shared), "AKDAD": local("dad-secret", shared)})
    mum, dad = srv.client("AKMUM", "mum-secret"), srv.client("AKDAD", "dad-secret")
    mum.create_bucket(Bucket="family")
    # The objects are everyone's; the metadata is the writer's.
    mum.put_object(Bucket="family", Key="holiday.jpg", Body=b"sand", ContentType="image/jpeg",
                   Metadata={"album": "summer"})
    assert dad.list_objects_v2(Bucket="family")["Contents"][0]["Key"] == "holiday.jpg"
    theirs = dad.head_object(Bucket="family", Key="holiday.jpg")
    assert theirs["Metadata"] == {} and theirs["ETag"] == f'"{md5hex(b"sand")}"'
    assert dad.get_object(Bucket="family", Key="holiday.jpg")["Body"].read() == b"sand"
    mine = mum.head_object(Bucket="family", Key="holiday.jpg")
    assert mine["Metadata"] == {"album": "summer"} and mine["ContentType"] == "image/jpeg"
    dad.put_object(Bucket="family", Key="dad.txt", Body=b"hi", Metadata={"by": "dad"})
    assert mum.head_object(Bucket="family", Key="dad.txt")["Metadata"] == {}
    assert dad.head_object(Bucket="family", Key="dad.txt")["Metadata"] == {"by": "dad"}
    # A multipart upload is its starter's: the other cannot list, see, complete or abort it.
    up = mum.create_multipart_upload(Bucket="family", Key="video.mp4", Metadata={"cam": "a"})["UploadId"]
    part = mum.upload_part(Bucket="family", Key="video.mp4", UploadId=up, PartNumber=1, Body=b"v" * 1000)
    assert [u["UploadId"] for u in mum.list_multipart_uploads(Bucket="family").get("Uploads", [])] == [up]
    assert dad.list_multipart_uploads(Bucket="family").get("Uploads", []) == []
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    for call, kw in [
        (dad.list_parts, {}),
        (dad.upload_part, {"PartNumber": 2, "Body": b"evil"}),
        (dad.complete_multipart_upload, {"MultipartUpload": parts}),
        (dad.abort_multipart_upload, {}),
    ]:
        assert code_of(call, Bucket="family", Key="video.mp4", UploadId=up, **kw) == (404, "NoSuchUpload")
    assert [p["PartNumber"] for p in mum.list_parts(Bucket="family", Key="video.mp4", UploadId=up)["Parts"]] == [1]
    mum.complete_multipart_upload(Bucket="family", Key="video.mp4", UploadId=up, MultipartUpload=parts)
    assert mum.head_object(Bucket="family", Key="video.mp4")["Metadata"] == {"cam": "a"}
    assert dad.get_object(Bucket="family", Key="video.mp4")["Body"].read() == b"v" * 1000
    # Nothing of either user's bookkeeping shows as an object or a bucket.
    assert [o["Key"] for o in dad.list_objects_v2(Bucket="family")["Contents"]] == \
        ["dad.txt", "holiday.jpg", "video.mp4"]
    assert buckets(dad) == ["family"]


def test_a_changed_answer_and_a_revoked_key_take_effect_within_the_cache_period(proxied, tmp_path):
    users = {"AKA": local("sa", tmp_path / "a"), "AKB": local("sb", tmp_path / "b")}
    srv = proxied(users, "-v", env={"S3SERVE_TEST_AUTH_PROXY_CACHE": "1s"})
    a = srv.client("AKA", "sa")
    a.create_bucket(Bucket="bucket-a")
    # A new root: the user's storage moves there once the program is asked again.
    (tmp_path / "a2" / "moved-here").mkdir(parents=True)
    users["AKA"]["_root"] = str(tmp_path / "a2")
    srv.set_users(users)
    assert poll(lambda: buckets(a) == ["moved-here"], timeout=30)
    assert "has a new backend; closing the old one" in srv.log()
    del users["AKA"]
    srv.set_users(users)

    def refused():
        try:
            a.list_buckets()
            return False
        except ClientError as e:
            return err_tuple(e) == (403, "InvalidAccessKeyId")

    assert poll(refused, timeout=30), "the revoked key kept working"
    assert buckets(srv.client("AKB", "sb")) == []


def err_tuple(e):
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def test_answers_are_cached_and_a_rotated_secret_works_at_once(proxied, tmp_path):
    users = {"AKA": local("old-secret", tmp_path / "a")}
    srv = proxied(users)
    old = srv.client("AKA", "old-secret")
    old.create_bucket(Bucket="rotating")
    for _ in range(20):
        old.list_buckets()
    assert len(srv.runs()) == 1, "the answer was not kept"
    users["AKA"]["secret"] = "new-secret"
    srv.set_users(users)
    new = srv.client("AKA", "new-secret")
    assert buckets(new) == ["rotating"]
    assert len(srv.runs()) == 2
    assert code_of(old.list_buckets) == (403, "SignatureDoesNotMatch")


def test_a_failing_program_gives_503_and_harms_no_one_else(proxied, tmp_path):
    pidfile = tmp_path / "hung.pid"
    users = {
        "AKOK": local("ok", tmp_path / "ok"),
        "AKCRASH": local("x", tmp_path / "c", behave="crash"),
        "AKGARBAGE": local("x", tmp_path / "g", behave="garbage"),
        "AKHANG": local("x", tmp_path / "h", behave="hang", pidfile=str(pidfile)),
        "AKNOSECRET": {"type": "local", "_root": str(tmp_path / "n")},
        "AKEMPTY": local("", tmp_path / "e"),
    }
    srv = proxied(users, env={"S3SERVE_TEST_AUTH_PROXY_TIMEOUT": "2s"})
    ok = srv.client("AKOK", "ok")
    ok.create_bucket(Bucket="fine")
    # The hanging program holds its requests for the time limit; others go on meanwhile.
    hung = {}
    t = threading.Thread(target=lambda: hung.update(code=code_of(srv.client("AKHANG", "x").list_buckets)))
    t.start()
    assert poll(pidfile.exists, timeout=20)
    ok.put_object(Bucket="fine", Key="during-the-hang", Body=b"x")
    assert code_of(srv.client("AKCRASH", "x").list_buckets) == (503, "ServiceUnavailable")
    assert code_of(srv.client("AKGARBAGE", "x").list_buckets) == (503, "ServiceUnavailable")
    assert code_of(srv.client("AKNOSECRET", "x").list_buckets) == (403, "InvalidAccessKeyId")
    assert code_of(srv.client("AKEMPTY", "x").list_buckets) == (403, "InvalidAccessKeyId")
    t.join(60)
    assert hung["code"] == (503, "ServiceUnavailable")
    # The hung program was killed and reaped: its pid is gone, not a zombie.
    pid = int(pidfile.read_text())
    assert poll(lambda: not Path(f"/proc/{pid}").exists(), timeout=10), \
        Path(f"/proc/{pid}/status").read_text()
    # A failure is not kept: the next request asks again (and fails again).
    crash_runs = sum(r["user"] == "AKCRASH" for r in srv.runs())
    code_of(srv.client("AKCRASH", "x").list_buckets)
    assert sum(r["user"] == "AKCRASH" for r in srv.runs()) == crash_runs + 1
    log = srv.log()
    assert "the user database is unreachable" in log
    assert "not a JSON object" in log
    assert "did not answer within 2s and was killed" in log
    assert ok.get_object(Bucket="fine", Key="during-the-hang")["Body"].read() == b"x"


def test_fifty_concurrent_first_requests_run_the_program_once(proxied, tmp_path):
    srv = proxied({"AKNEW": local("s", tmp_path / "n", behave="slow")})
    clients = [srv.client("AKNEW", "s") for _ in range(50)]
    barrier = threading.Barrier(50)
    results = []

    def first(s3):
        barrier.wait()
        results.append(buckets(s3))

    threads = [threading.Thread(target=first, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [[]] * 50
    assert [r["user"] for r in srv.runs()] == ["AKNEW"]


def test_presigned_urls_and_browser_forms_go_to_the_signers_storage(proxied, tmp_path):
    import urllib.request
    import requests
    srv = proxied({"AKA": local("sa", tmp_path / "a"), "AKB": local("sb", tmp_path / "b")})
    a = srv.client("AKA", "sa")
    a.create_bucket(Bucket="shared-out")
    a.put_object(Bucket="shared-out", Key="f.txt", Body=b"hello")
    url = a.generate_presigned_url("get_object", Params={"Bucket": "shared-out", "Key": "f.txt"})
    assert urllib.request.urlopen(url).read() == b"hello"
    post = a.generate_presigned_post("shared-out", "form.txt")
    r = requests.post(post["url"], data=post["fields"], files={"file": ("form.txt", b"posted")})
    assert r.status_code == 204, r.text
    assert (tmp_path / "a" / "shared-out" / "form.txt").read_bytes() == b"posted"
    b = srv.client("AKB", "sb")
    b.create_bucket(Bucket="shared-out")
    post = b.generate_presigned_post("shared-out", "form.txt")
    requests.post(post["url"], data=post["fields"], files={"file": ("form.txt", b"bob's")})
    assert (tmp_path / "b" / "shared-out" / "form.txt").read_bytes() == b"bob's"
    assert (tmp_path / "a" / "shared-out" / "form.txt").read_bytes() == b"posted"


def test_etag_hash_auto_and_the_command_line(proxied, tmp_path):
    srv = proxied({"AKA": local("sa", tmp_path / "a")}, "--etag-hash", "auto", "--auth-key", "OTHER,KEY")
    a = srv.client("AKA", "sa")
    a.create_bucket(Bucket="etags")
    assert a.put_object(Bucket="etags", Key="k", Body=b"data")["ETag"] == f'"{md5hex(b"data")}"'
    # --auth-key is ignored, and says so.
    assert code_of(srv.client("OTHER", "KEY").list_buckets) == (403, "InvalidAccessKeyId")
    assert "--auth-key is ignored: --auth-proxy is set" in srv.log()
    # rclone's form takes no PATH: one given is refused.
    p = subprocess.run([S3SERVE_BIN, "--auth-proxy", "/bin/true", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "given with --auth-proxy" in p.stderr


def test_each_user_has_a_cache_of_their_own(proxied, tmp_path):
    shared = tmp_path / "shared"
    srv = proxied({"AKA": local("sa", shared), "AKB": local("sb", shared)},
                  "--vfs-cache-mode", "writes", "--vfs-write-back", "0s",
                  "--cache-dir", str(tmp_path / "cache"))
    a, b = srv.client("AKA", "sa"), srv.client("AKB", "sb")
    a.create_bucket(Bucket="cached")
    a.put_object(Bucket="cached", Key="from-a", Body=b"aaa", Metadata={"who": "a"})
    b.put_object(Bucket="cached", Key="from-b", Body=b"bbb", Metadata={"who": "b"})
    assert (shared / "cached" / "from-a").read_bytes() == b"aaa"
    assert (shared / "cached" / "from-b").read_bytes() == b"bbb"
    assert a.head_object(Bucket="cached", Key="from-a")["Metadata"] == {"who": "a"}
    assert b.head_object(Bucket="cached", Key="from-b")["Metadata"] == {"who": "b"}
    up = a.create_multipart_upload(Bucket="cached", Key="mp")["UploadId"]
    assert b.list_multipart_uploads(Bucket="cached").get("Uploads", []) == []
    assert code_of(b.abort_multipart_upload, Bucket="cached", Key="mp", UploadId=up) == (404, "NoSuchUpload")
    caches = sorted(p.name for p in (tmp_path / "cache" / "vfs" / "auth-proxy").iterdir())
    assert len(caches) == 2, caches
