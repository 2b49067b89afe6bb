"""The aws cli (v1) against the server: s3 mb/cp/ls/sync/rm/rb and s3api with metadata,
checking the files on disk."""

import hashlib
import json
import os

import pytest

from conftest import upstream_cannot, files_under, unique_bucket_name


@pytest.fixture
def cli_bucket(aws, data_dir, request):
    name = unique_bucket_name("cli-" + request.node.name.replace("test_", "", 1))
    p = aws("s3", "mb", f"s3://{name}")
    assert f"make_bucket: {name}" in p.stdout
    assert (data_dir / name).is_dir()
    return name


def test_mb_existing_fails(aws, cli_bucket):
    p = aws("s3", "mb", f"s3://{cli_bucket}", check=False)
    assert p.returncode != 0
    assert "BucketAlreadyOwnedByYou" in p.stderr


def test_mb_invalid_name(aws, data_dir):
    p = aws("s3", "mb", "s3://Bad_Name", check=False)
    assert p.returncode != 0
    assert "InvalidBucketName" in p.stderr
    assert not (data_dir / "Bad_Name").exists()


def test_cp_small_up_and_down(aws, cli_bucket, data_dir, tmp_path):
    src = tmp_path / "cat.jpg"
    src.write_bytes(os.urandom(12345))
    p = aws("s3", "cp", src, f"s3://{cli_bucket}/2026/cat.jpg")
    assert "upload:" in p.stdout
    assert (data_dir / cli_bucket / "2026" / "cat.jpg").read_bytes() == src.read_bytes()
    dst = tmp_path / "down.jpg"
    aws("s3", "cp", f"s3://{cli_bucket}/2026/cat.jpg", dst)
    assert dst.read_bytes() == src.read_bytes()
    # Content-Type guessed by the cli from the extension is stored.
    h = json.loads(aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "2026/cat.jpg").stdout)
    assert h["ContentType"] == "image/jpeg"
    assert h["ContentLength"] == 12345
    assert h["ETag"] == '"%s"' % hashlib.md5(src.read_bytes()).hexdigest()


def test_cp_empty_file(aws, cli_bucket, data_dir, tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    aws("s3", "cp", src, f"s3://{cli_bucket}/empty")
    assert (data_dir / cli_bucket / "empty").read_bytes() == b""
    dst = tmp_path / "empty.down"
    aws("s3", "cp", f"s3://{cli_bucket}/empty", dst)
    assert dst.read_bytes() == b""


def test_cp_stdin_stdout(aws, aws_env, server, cli_bucket, data_dir):
    import subprocess

    from conftest import AWS_BIN

    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3", "cp", "-", f"s3://{cli_bucket}/from-stdin"],
                       input=b"piped bytes", env=aws_env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (data_dir / cli_bucket / "from-stdin").read_bytes() == b"piped bytes"
    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3", "cp", f"s3://{cli_bucket}/from-stdin", "-"],
                       env=aws_env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"piped bytes"


@pytest.mark.multipart
def test_cp_large_multipart(aws, cli_bucket, data_dir, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    aws("s3", "cp", src, f"s3://{cli_bucket}/big/big.bin")
    on_disk = data_dir / cli_bucket / "big" / "big.bin"
    assert hashlib.md5(on_disk.read_bytes()).hexdigest() == hashlib.md5(src.read_bytes()).hexdigest()
    dst = tmp_path / "big.down"
    aws("s3", "cp", f"s3://{cli_bucket}/big/big.bin", dst)
    assert dst.read_bytes() == src.read_bytes()
    # No multipart leftovers in the bucket directory.
    assert files_under(data_dir / cli_bucket) == ["big/big.bin"]


def test_cp_large_download_only(aws, cli_bucket, data_dir, tmp_path):
    # A 20 MiB file put on disk directly: the cli downloads it with ranged GETs.
    data = os.urandom(20 * 1024 * 1024)
    (data_dir / cli_bucket / "ondisk.bin").write_bytes(data)
    dst = tmp_path / "ondisk.down"
    aws("s3", "cp", f"s3://{cli_bucket}/ondisk.bin", dst)
    assert hashlib.md5(dst.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()


def test_ls(aws, cli_bucket, tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"hello")
    for key in ["top.txt", "dir/a.txt", "dir/sub/b.txt", "sp ace/c+d.txt"]:
        aws("s3", "cp", f, f"s3://{cli_bucket}/{key}")
    out = aws("s3", "ls").stdout
    assert f" {cli_bucket}\n" in out
    lines = aws("s3", "ls", f"s3://{cli_bucket}/").stdout.splitlines()
    assert any(line.strip() == "PRE dir/" for line in lines), lines
    assert any(line.strip() == "PRE sp ace/" for line in lines), lines
    top = [line for line in lines if line.endswith(" top.txt")]
    assert len(top) == 1 and top[0].split()[2] == "5", lines
    lines = aws("s3", "ls", f"s3://{cli_bucket}/dir/").stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["sub/", "a.txt"]
    lines = aws("s3", "ls", "--recursive", f"s3://{cli_bucket}").stdout.splitlines()
    keys = [line.split(None, 3)[3] for line in lines]
    assert keys == ["dir/a.txt", "dir/sub/b.txt", "sp ace/c+d.txt", "top.txt"]


def test_ls_missing_bucket(aws):
    p = aws("s3", "ls", f"s3://{unique_bucket_name('nope')}", check=False)
    assert p.returncode != 0
    assert "NoSuchBucket" in p.stderr


def _make_tree(root):
    files = {
        "a.txt": b"alpha",
        "sub/b.txt": b"bravo" * 100,
        "sub/deeper/c.bin": os.urandom(5000),
        "space name/d e.txt": b"delta",
        "ünï/é.txt": "unicode".encode(),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def test_sync_both_directions(aws, cli_bucket, data_dir, tmp_path):
    up = tmp_path / "up"
    files = _make_tree(up)
    p = aws("s3", "sync", up, f"s3://{cli_bucket}/site")
    assert p.stdout.count("upload:") == len(files)
    for rel, data in files.items():
        assert (data_dir / cli_bucket / "site" / rel).read_bytes() == data
    # A second sync has nothing to do.
    p = aws("s3", "sync", up, f"s3://{cli_bucket}/site")
    assert "upload:" not in p.stdout, p.stdout
    # Change one file locally (different size) and sync again: only that one goes up.
    (up / "a.txt").write_bytes(b"alpha changed")
    p = aws("s3", "sync", up, f"s3://{cli_bucket}/site")
    assert p.stdout.count("upload:") == 1 and "a.txt" in p.stdout
    assert (data_dir / cli_bucket / "site" / "a.txt").read_bytes() == b"alpha changed"
    files["a.txt"] = b"alpha changed"
    # Down into a fresh directory.
    down = tmp_path / "down"
    p = aws("s3", "sync", f"s3://{cli_bucket}/site", down)
    assert p.stdout.count("download:") == len(files)
    assert sorted(files_under(down)) == sorted(files)
    for rel, data in files.items():
        assert (down / rel).read_bytes() == data
    p = aws("s3", "sync", f"s3://{cli_bucket}/site", down)
    assert "download:" not in p.stdout, p.stdout


def test_sync_delete(aws, cli_bucket, data_dir, tmp_path):
    up = tmp_path / "up"
    files = _make_tree(up)
    aws("s3", "sync", up, f"s3://{cli_bucket}")
    (up / "sub" / "deeper" / "c.bin").unlink()
    p = aws("s3", "sync", "--delete", up, f"s3://{cli_bucket}")
    assert "delete:" in p.stdout
    assert not (data_dir / cli_bucket / "sub" / "deeper").exists()
    assert (data_dir / cli_bucket / "sub" / "b.txt").read_bytes() == files["sub/b.txt"]


def test_rm_recursive_and_rb(aws, cli_bucket, data_dir, tmp_path):
    up = tmp_path / "up"
    files = _make_tree(up)
    aws("s3", "sync", up, f"s3://{cli_bucket}")
    p = aws("s3", "rb", f"s3://{cli_bucket}", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr
    p = aws("s3", "rm", "--recursive", f"s3://{cli_bucket}/sub")
    assert p.stdout.count("delete:") == 2
    assert not (data_dir / cli_bucket / "sub").exists()
    p = aws("s3", "rm", "--recursive", f"s3://{cli_bucket}")
    assert p.stdout.count("delete:") == len(files) - 2
    assert list((data_dir / cli_bucket).iterdir()) == [] or all(
        x.name.startswith(".s3serve") for x in (data_dir / cli_bucket).iterdir())
    p = aws("s3", "rb", f"s3://{cli_bucket}")
    assert f"remove_bucket: {cli_bucket}" in p.stdout
    assert not (data_dir / cli_bucket).exists()


def test_rb_force(aws, cli_bucket, data_dir, tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    aws("s3", "cp", f, f"s3://{cli_bucket}/a/b/x")
    aws("s3", "rb", "--force", f"s3://{cli_bucket}")
    assert not (data_dir / cli_bucket).exists()


def test_mv(aws, cli_bucket, data_dir, tmp_path):
    f = tmp_path / "m.txt"
    f.write_bytes(b"move me")
    aws("s3", "cp", f, f"s3://{cli_bucket}/from/m.txt")
    aws("s3", "mv", f"s3://{cli_bucket}/from/m.txt", f"s3://{cli_bucket}/to/m.txt")
    assert (data_dir / cli_bucket / "to" / "m.txt").read_bytes() == b"move me"
    assert not (data_dir / cli_bucket / "from").exists()


def test_s3api_put_head_get_with_metadata(aws, cli_bucket, data_dir, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(b"s3api body")
    out = json.loads(aws(
        "s3api", "put-object", "--bucket", cli_bucket, "--key", "api/obj",
        "--body", body, "--content-type", "text/x-api", "--cache-control", "no-cache",
        "--content-disposition", "attachment", "--metadata", "Owner=alice,Project=Blue Sky",
    ).stdout)
    assert out["ETag"] == '"%s"' % hashlib.md5(b"s3api body").hexdigest()
    assert (data_dir / cli_bucket / "api" / "obj").read_bytes() == b"s3api body"
    h = json.loads(aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "api/obj").stdout)
    assert h["ContentType"] == "text/x-api"
    assert h["CacheControl"] == "no-cache"
    assert h["ContentDisposition"] == "attachment"
    assert h["Metadata"] == {"owner": "alice", "project": "Blue Sky"}
    assert h["ContentLength"] == len(b"s3api body")
    assert h["ETag"] == out["ETag"]
    outfile = tmp_path / "got"
    g = json.loads(aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "api/obj", outfile).stdout)
    assert outfile.read_bytes() == b"s3api body"
    assert g["Metadata"] == {"owner": "alice", "project": "Blue Sky"}
    assert g["ContentType"] == "text/x-api"
    g = json.loads(aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "api/obj",
                       "--range", "bytes=0-4", outfile).stdout)
    assert outfile.read_bytes() == b"s3api"
    assert g["ContentRange"] == "bytes 0-4/10"


def test_s3api_head_missing(aws, cli_bucket):
    p = aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "nope", check=False)
    assert p.returncode != 0
    assert "404" in p.stderr


def test_s3api_list_objects_v2(aws, cli_bucket, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    for k in ["a/1", "a/2", "b"]:
        aws("s3", "cp", f, f"s3://{cli_bucket}/{k}")
    out = json.loads(aws("s3api", "list-objects-v2", "--no-paginate", "--bucket", cli_bucket,
                         "--delimiter", "/").stdout)
    assert [c["Key"] for c in out["Contents"]] == ["b"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/"]
    assert out["KeyCount"] == 2


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_s3api_copy_object(aws, cli_bucket, data_dir, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"copy via cli")
    aws("s3api", "put-object", "--bucket", cli_bucket, "--key", "src", "--body", f, "--metadata", "k=v")
    out = json.loads(aws("s3api", "copy-object", "--bucket", cli_bucket, "--key", "dst",
                         "--copy-source", f"{cli_bucket}/src").stdout)
    assert out["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(b"copy via cli").hexdigest()
    assert (data_dir / cli_bucket / "dst").read_bytes() == b"copy via cli"
    h = json.loads(aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "dst").stdout)
    assert h["Metadata"] == {"k": "v"}


def test_cli_wrong_credentials(server, aws_env, cli_bucket):
    import subprocess

    from conftest import AWS_BIN

    env = dict(aws_env, AWS_SECRET_ACCESS_KEY="wrong")
    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3", "ls", f"s3://{cli_bucket}"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "SignatureDoesNotMatch" in p.stderr


def test_presign_cli(aws, aws_env, server, cli_bucket, tmp_path):
    import subprocess

    import requests

    from conftest import AWS_BIN

    f = tmp_path / "f"
    f.write_bytes(b"presigned by cli")
    aws("s3", "cp", f, f"s3://{cli_bucket}/p")
    cfg = tmp_path / "config"
    cfg.write_text("[default]\ns3 =\n    signature_version = s3v4\n")
    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3", "presign", f"s3://{cli_bucket}/p",
                        "--expires-in", "300"], env=dict(aws_env, AWS_CONFIG_FILE=str(cfg)),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"presigned by cli"
