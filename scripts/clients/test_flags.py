"""Server flags seen through a real client: --baseurl with auth, modes, logging, workers."""

import os
import stat
import subprocess

import pytest
import requests

from conftest import local_only, AK, AK2, SK, SK2, expect_error, make_client, unique_bucket_name


def test_baseurl_works_with_auth_keys(start_server):
    srv = start_server("--baseurl", "/s3/prefix/")
    s3 = make_client(srv.url + "/s3/prefix")
    b = unique_bucket_name("base")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k/v.txt", Body=b"under a prefix", Metadata={"a": "1"})
    assert s3.get_object(Bucket=b, Key="k/v.txt")["Body"].read() == b"under a prefix"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["k/v.txt"]
    assert (srv.data_dir / b / "k" / "v.txt").read_bytes() == b"under a prefix"
    s3v4 = make_client(srv.url + "/s3/prefix", signature_version="s3v4")
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k/v.txt"}, ExpiresIn=60)
    got = requests.get(url, timeout=10)
    assert got.content == b"under a prefix", (url, got.text)
    # boto3's default presigner speaks SigV2, which works under the prefix too.
    v2 = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k/v.txt"}, ExpiresIn=60)
    assert "AWSAccessKeyId=" in v2
    r = requests.get(v2, timeout=10)
    assert r.content == b"under a prefix", (v2, r.text)
    s3v2 = make_client(srv.url + "/s3/prefix", signature_version="s3")
    assert s3v2.get_object(Bucket=b, Key="k/v.txt")["Body"].read() == b"under a prefix"
    # Outside the prefix there is nothing to serve.
    outside = make_client(srv.url)
    try:
        outside.head_bucket(Bucket=b)
        raise AssertionError("a request outside --baseurl was served")
    except Exception as e:  # botocore ClientError
        assert "404" in str(e)


@local_only("file modes on disk are the upstream's")
def test_file_and_dir_perms_with_umask(start_server):
    srv = start_server("--file-perms", "0640", "--dir-perms", "0750", "--umask", "0")
    s3 = srv.client()
    b = unique_bucket_name("perms")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="d/f", Body=b"x")
    assert stat.S_IMODE(os.stat(srv.data_dir / b / "d" / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(srv.data_dir / b / "d").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(srv.data_dir / b).st_mode) == 0o750


def test_default_umask_masks_perms(start_server):
    srv = start_server()
    s3 = srv.client()
    b = unique_bucket_name("umask")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="f", Body=b"x")
    assert stat.S_IMODE(os.stat(srv.data_dir / b / "f").st_mode) == 0o644


def test_log_file_gets_start_up_and_access_lines(start_server, tmp_path):
    log = tmp_path / "s3serve.log"
    srv = start_server("-v", "--log-file", str(log))
    s3 = srv.client()
    b = unique_bucket_name("log")
    s3.create_bucket(Bucket=b)
    s3.list_objects_v2(Bucket=b)
    srv.stop()
    text = log.read_text()
    assert f"listening on http://127.0.0.1:{srv.port}" in text
    assert " PUT CreateBucket 200 " in text and " GET ListObjectsV2 200 " in text


def test_one_worker_still_serves_everything(start_server):
    srv = start_server("--workers", "1")
    s3 = srv.client()
    b = unique_bucket_name("w1")
    s3.create_bucket(Bucket=b)
    for i in range(20):
        s3.put_object(Bucket=b, Key=f"k{i}", Body=b"x")
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 20


def test_virtual_hosted_style_with_boto3(start_server, vhost_domain):
    srv = start_server("--force-path-style=false", "--vhost-domain", "s3.test")
    seen_hosts = []
    s3 = make_client(f"http://s3.test:{srv.port}", s3={"addressing_style": "virtual"})
    s3.meta.events.register("before-send.s3.*", lambda request, **kw: seen_hosts.append(request.url))
    b = unique_bucket_name("vhost")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="a/b.txt", Body=b"virtual")
    assert s3.get_object(Bucket=b, Key="a/b.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["a/b.txt"]
    assert any(u.startswith(f"http://{b}.s3.test:") for u in seen_hosts), seen_hosts
    assert (srv.data_dir / b / "a" / "b.txt").read_bytes() == b"virtual"
    # Path style on the same server, and ListBuckets on the bare domain.
    path = make_client(srv.url)
    assert path.get_object(Bucket=b, Key="a/b.txt")["Body"].read() == b"virtual"
    assert b in [x["Name"] for x in s3.list_buckets()["Buckets"]]


def test_force_path_style_false_needs_a_domain(tmp_path):
    import subprocess
    from conftest import S3SERVE_BIN
    p = subprocess.run([S3SERVE_BIN, "--force-path-style=false", str(tmp_path)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "--vhost-domain" in p.stderr


def test_unix_socket_with_curl(start_server, tmp_path):
    import subprocess
    sock = tmp_path / "s3serve.sock"
    srv = start_server("--addr", f"unix://{sock}")
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", str(sock),
                        "-X", "PUT", "http://localhost/viaunix"], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip().endswith("200"), r
    r = subprocess.run(["curl", "-s", "--unix-socket", str(sock), "http://localhost/"], capture_output=True, text=True, timeout=30)
    assert "<Name>viaunix</Name>" in r.stdout, r
    assert (srv.data_dir / "viaunix").is_dir()
    # The same server's TCP listener still wants a signature.
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", srv.url + "/"], capture_output=True, text=True, timeout=30)
    assert r.stdout == "403"


def test_rclone_auth_key_variable_sets_the_keys(start_server):
    """RCLONE_AUTH_KEY, CSV with quoted pairs as rclone documents it, is the only source of keys."""
    env = {"RCLONE_AUTH_KEY": f'"{AK},{SK}","{AK2},{SK2}"', "RCLONE_READ_ONLY": "false"}
    srv = start_server(auth=None, env=env)
    assert "anonymous" not in srv.log()
    b = unique_bucket_name("envkeys")
    srv.client().create_bucket(Bucket=b)
    srv.client(AK2, SK2).put_object(Bucket=b, Key="k", Body=b"second key")
    assert srv.client().get_object(Bucket=b, Key="k")["Body"].read() == b"second key"
    expect_error(403, "AccessDenied", srv.anon_client().list_objects_v2, Bucket=b)
    expect_error(403, None, srv.client(AK, "wrong").list_objects_v2, Bucket=b)


@local_only("it checks --etag-hash through the ETag, which is the upstream's")
def test_rclone_variables_and_the_command_line(start_server):
    """A variable sets a flag's default; the command line wins over it."""
    srv = start_server("--read-only=false", env={"RCLONE_READ_ONLY": "true", "RCLONE_ETAG_HASH": "SHA1"})
    s3 = srv.client()
    b = unique_bucket_name("envcli")
    s3.create_bucket(Bucket=b)
    etag = s3.put_object(Bucket=b, Key="k", Body=b"abc")["ETag"]
    assert etag == '"a9993e364706816aba3e25717850c26c9cd0d89d"'  # SHA-1 of abc
    ro = start_server(env={"RCLONE_READ_ONLY": "true"})
    expect_error(403, "AccessDenied", ro.client().create_bucket, Bucket=unique_bucket_name("ro"))


@local_only("it names its own remote to serve")
def test_a_remote_from_the_config_file_is_served(start_server, tmp_path):
    """`name:path` names a remote of the rclone config file, as in rclone serve s3."""
    data = tmp_path / "disk"
    data.mkdir()
    conf = tmp_path / "rclone.conf"
    conf.write_text("[disk]\ntype = local\n")
    srv = start_server("--config", str(conf), data_dir=f"disk:{data}")
    c = srv.client()
    c.create_bucket(Bucket="remote-bkt")
    c.put_object(Bucket="remote-bkt", Key="k", Body=b"through the remote")
    assert (data / "remote-bkt" / "k").read_bytes() == b"through the remote"


@local_only("it names its own remote to serve")
def test_a_remote_set_in_the_environment_is_served(start_server, tmp_path):
    data = tmp_path / "envdisk"
    data.mkdir()
    srv = start_server(data_dir=f"envdisk:{data}",
                       env={"RCLONE_CONFIG_ENVDISK_TYPE": "local", "RCLONE_CONFIG": ""})
    c = srv.client()
    c.create_bucket(Bucket="env-bkt")
    assert (data / "env-bkt").is_dir()


@pytest.mark.parametrize("path, words", [
    ("nosuch:bucket", ["nosuch", "not in the config file"]),
    ("a*b:x", ["name may hold only"]),
    (":s3,endpoint='unterminated:", ["quoted"]),
])
def test_a_remote_that_cannot_be_served_stops_the_start(tmp_path, path, words):
    from conftest import S3SERVE_BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["RCLONE_CONFIG"] = ""  # no config file: only connection strings and variables
    p = subprocess.run([S3SERVE_BIN, path], capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode == 2, p
    assert "panicked" not in p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
