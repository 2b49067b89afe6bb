"""A gateway in front of moto (a third, independent S3 implementation, run as a server):
what a client does through s3serve reaches moto as moto's own objects, uploads and copies."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import UPSTREAM, Server, expect_error, free_port, make_client

pytestmark = pytest.mark.skipif(bool(UPSTREAM), reason="starts its own upstream")

MOTO_AK, MOTO_SK = "motokey", "motosecret"


@pytest.fixture
def moto(tmp_path):
    """A moto server, and a boto3 client that talks to it directly."""
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    moto_bin = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto_bin), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    direct = make_client(url, MOTO_AK, MOTO_SK)
    deadline = time.monotonic() + 60
    while True:
        try:
            direct.list_buckets()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start: {(tmp_path / 'moto.log').read_text()}")
            time.sleep(0.2)
    yield url, direct
    proc.terminate()
    proc.wait(20)
    log.close()


def gateway(start_server, url, path=""):
    remote = f":s3,provider=Other,endpoint='{url}',access_key_id={MOTO_AK},secret_access_key={MOTO_SK}:{path}"
    return start_server(data_dir=remote)


def test_objects_through_a_gateway_are_motos(start_server, moto):
    url, direct = moto
    srv = gateway(start_server, url)
    s3 = srv.client()
    s3.create_bucket(Bucket="gwm")
    assert [b["Name"] for b in direct.list_buckets()["Buckets"]] == ["gwm"]
    body = os.urandom(300_000)
    put = s3.put_object(Bucket="gwm", Key="dir/a b.bin", Body=body, ContentType="image/png",
                        Metadata={"who": "me"}, CacheControl="max-age=5")
    on_moto = direct.head_object(Bucket="gwm", Key="dir/a b.bin")
    assert on_moto["ETag"] == put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert on_moto["ContentType"] == "image/png" and on_moto["Metadata"] == {"who": "me"}
    g = s3.get_object(Bucket="gwm", Key="dir/a b.bin")
    assert g["Body"].read() == body
    assert (g["ContentType"], g["Metadata"], g["CacheControl"]) == ("image/png", {"who": "me"}, "max-age=5")
    r = s3.get_object(Bucket="gwm", Key="dir/a b.bin", Range="bytes=1000-1999")
    assert r["Body"].read() == body[1000:2000]
    for k in ("top", "dir/b", "dir/sub/c"):
        direct.put_object(Bucket="gwm", Key=k, Body=k.encode())
    l = s3.list_objects_v2(Bucket="gwm", Delimiter="/")
    assert [c["Key"] for c in l["Contents"]] == ["top"]
    assert [p["Prefix"] for p in l["CommonPrefixes"]] == ["dir/"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="gwm", PaginationConfig={"PageSize": 2})
    assert [c["Key"] for p in pages for c in p["Contents"]] == ["dir/a b.bin", "dir/b", "dir/sub/c", "top"]
    v1 = s3.list_objects(Bucket="gwm", Prefix="dir/", Delimiter="/")
    assert [c["Key"] for c in v1["Contents"]] == ["dir/a b.bin", "dir/b"]
    s3.copy_object(Bucket="gwm", Key="copy", CopySource={"Bucket": "gwm", "Key": "dir/a b.bin"})
    assert direct.get_object(Bucket="gwm", Key="copy")["Body"].read() == body
    s3.delete_object(Bucket="gwm", Key="top")
    d = s3.delete_objects(Bucket="gwm", Delete={"Objects": [{"Key": "dir/b"}, {"Key": "copy"}]})
    assert sorted(x["Key"] for x in d["Deleted"]) == ["copy", "dir/b"]
    left = [c["Key"] for c in direct.list_objects_v2(Bucket="gwm")["Contents"]]
    assert left == ["dir/a b.bin", "dir/sub/c"]
    expect_error(404, "NoSuchKey", s3.get_object, Bucket="gwm", Key="missing")
    expect_error(404, "NoSuchBucket", s3.list_objects_v2, Bucket="nobucket")
    expect_error(409, "BucketNotEmpty", s3.delete_bucket, Bucket="gwm")


def test_multipart_through_a_gateway_is_motos_multipart(start_server, moto, tmp_path):
    url, direct = moto
    srv = gateway(start_server, url)
    s3 = srv.client()
    s3.create_bucket(Bucket="gwmp")
    src = tmp_path / "big"
    src.write_bytes(os.urandom(17 * 1024 * 1024))
    from boto3.s3.transfer import TransferConfig
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=4)
    s3.upload_file(str(src), "gwmp", "big", Config=cfg)
    h = direct.head_object(Bucket="gwmp", Key="big")
    assert h["ETag"].endswith('-4"') and h["ContentLength"] == src.stat().st_size
    down = tmp_path / "down"
    s3.download_file("gwmp", "big", str(down), Config=cfg)
    assert down.read_bytes() == src.read_bytes()
    # An upload in progress is moto's; aborting it here aborts it there.
    u = s3.create_multipart_upload(Bucket="gwmp", Key="pending")
    s3.upload_part(Bucket="gwmp", Key="pending", UploadId=u["UploadId"], PartNumber=1, Body=b"x" * 100)
    assert [x["Key"] for x in direct.list_multipart_uploads(Bucket="gwmp").get("Uploads", [])] == ["pending"]
    assert [x["Key"] for x in s3.list_multipart_uploads(Bucket="gwmp").get("Uploads", [])] == ["pending"]
    s3.abort_multipart_upload(Bucket="gwmp", Key="pending", UploadId=u["UploadId"])
    assert direct.list_multipart_uploads(Bucket="gwmp").get("Uploads", []) == []


def test_below_a_bucket_its_folders_are_buckets(start_server, moto):
    url, direct = moto
    direct.create_bucket(Bucket="base")
    srv = gateway(start_server, url, "base/pre")
    s3 = srv.client()
    s3.create_bucket(Bucket="inner")
    s3.put_object(Bucket="inner", Key="k.txt", Body=b"inside")
    assert direct.get_object(Bucket="base", Key="pre/inner/k.txt")["Body"].read() == b"inside"
    assert "inner" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket="inner", Key="k.txt")["Body"].read() == b"inside"
