"""Signature Version 2: boto3's default presigner, boto3 with signature_version='s3' (header
auth and POST forms), s3cmd with signature_v2, and raw requests for what clients hide:
expiry, wrong secrets, unknown keys, skewed clocks."""

import base64
import hashlib
import hmac
import os
import subprocess
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from conftest import (
    AK,
    SK,
    USE_RCLONE,
    expect_error,
    make_client,
    raw_request,
    unique_bucket_name,
    xml_strip_ns,
)

S3CMD = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "s3cmd"


def v2_signature(string_to_sign, secret=SK):
    mac = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@pytest.fixture
def s3v2(server):
    return make_client(server.url, signature_version="s3")


def test_boto3_default_presigned_urls_get_and_put(s3, bucket, data_dir):
    s3.put_object(Bucket=bucket, Key="a b+c.txt", Body=b"presigned v2")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a b+c.txt"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "X-Amz-" not in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == b"presigned v2", r.text
    url = s3.generate_presigned_url(
        "get_object", ExpiresIn=300,
        Params={"Bucket": bucket, "Key": "a b+c.txt", "ResponseContentType": "text/x-v2"})
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "text/x-v2", r.text
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up.bin"}, ExpiresIn=300)
    body = os.urandom(70_000)
    r = requests.put(put, data=body, timeout=10)
    assert r.status_code == 200, r.text
    assert (data_dir / bucket / "up.bin").read_bytes() == body
    # The headers it was signed with travel in the query, and are stored as sent headers are.
    put_meta = s3.generate_presigned_url(
        "put_object", ExpiresIn=300,
        Params={"Bucket": bucket, "Key": "meta.txt", "ContentType": "text/x-signed", "Metadata": {"who": "v2"}})
    assert "x-amz-meta-who=v2" in put_meta and "content-type=" in put_meta
    r = requests.put(put_meta, data=b"with metadata", timeout=10)
    assert r.status_code == 200, r.text
    head = s3.head_object(Bucket=bucket, Key="meta.txt")
    assert head["ContentType"] == "text/x-signed" and head["Metadata"] == {"who": "v2"}
    # An x-amz header the signer did not have is not covered by the signature.
    r = requests.put(put_meta, data=b"x", headers={"x-amz-meta-who": "mallory"}, timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    # The URL is for this key and method only.
    r = requests.put(put.replace("up.bin", "other.bin"), data=b"x", timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content


def test_boto3_signature_version_2_session(s3v2, bucket, data_dir):
    s3v2.put_object(Bucket=bucket, Key="dir/k.txt", Body=b"v2 header auth", Metadata={"who": "v2"},
                    ContentType="text/plain")
    got = s3v2.get_object(Bucket=bucket, Key="dir/k.txt")
    assert got["Body"].read() == b"v2 header auth" and got["Metadata"] == {"who": "v2"}
    assert [o["Key"] for o in s3v2.list_objects_v2(Bucket=bucket)["Contents"]] == ["dir/k.txt"]
    s3v2.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "dir/k.txt"})
    # Multipart: ?uploads, ?uploadId and ?partNumber are subresources in the signed resource.
    mp = s3v2.create_multipart_upload(Bucket=bucket, Key="mp.bin")
    parts = []
    data = [os.urandom(5 * 1024 * 1024), b"tail"]
    for i, d in enumerate(data, 1):
        r = s3v2.upload_part(Bucket=bucket, Key="mp.bin", UploadId=mp["UploadId"], PartNumber=i, Body=d)
        parts.append({"PartNumber": i, "ETag": r["ETag"]})
    listed = s3v2.list_parts(Bucket=bucket, Key="mp.bin", UploadId=mp["UploadId"])
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
    s3v2.complete_multipart_upload(Bucket=bucket, Key="mp.bin", UploadId=mp["UploadId"],
                                   MultipartUpload={"Parts": parts})
    assert (data_dir / bucket / "mp.bin").read_bytes() == b"".join(data)
    r = s3v2.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy.txt"}, {"Key": "mp.bin"}]})
    assert len(r["Deleted"]) == 2
    s3v2.delete_object(Bucket=bucket, Key="dir/k.txt")
    assert s3v2.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert bucket in [b["Name"] for b in s3v2.list_buckets()["Buckets"]]
    bad = make_client(s3v2.meta.endpoint_url, AK, "wrong", signature_version="s3")
    expect_error(403, "SignatureDoesNotMatch", bad.list_objects_v2, Bucket=bucket)
    nobody = make_client(s3v2.meta.endpoint_url, "NOBODY", SK, signature_version="s3")
    expect_error(403, "InvalidAccessKeyId", nobody.list_objects_v2, Bucket=bucket)


def test_boto3_v2_post_form(server, bucket, data_dir):
    s3v2 = make_client(server.url, signature_version="s3")
    post = s3v2.generate_presigned_post(
        bucket, "forms/${filename}", ExpiresIn=300,
        Conditions=[["starts-with", "$key", "forms/"], ["content-length-range", 1, 1000]])
    assert "AWSAccessKeyId" in post["fields"] and "signature" in post["fields"]
    r = requests.post(post["url"], data=post["fields"], files={"file": ("note.txt", b"form v2")}, timeout=10)
    assert r.status_code == 204, r.text
    assert (data_dir / bucket / "forms" / "note.txt").read_bytes() == b"form v2"
    # The policy's conditions hold for version 2 forms too.
    r = requests.post(post["url"], data=post["fields"], files={"file": ("big.txt", b"x" * 2000)}, timeout=10)
    assert r.status_code == 400 and b"EntityTooLarge" in r.content, r.text
    fields = dict(post["fields"], key="elsewhere/x")
    r = requests.post(post["url"], data=fields, files={"file": ("x", b"x")}, timeout=10)
    assert r.status_code == 403 and b"Policy Condition failed" in r.content, r.text
    fields = dict(post["fields"], signature=v2_signature(post["fields"]["policy"], "wrong"))
    r = requests.post(post["url"], data=fields, files={"file": ("x", b"x")}, timeout=10)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content, r.text
    assert not (data_dir / bucket / "elsewhere").exists()


def raw_v2(server, method, path, headers=None, body=b"", secret=SK, ak=AK, date=None):
    """A header-signed SigV2 request (path style), signing Date and the x-amz headers."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    h["date"] = date or formatdate(usegmt=True)
    amz = "".join(f"{k}:{h[k].strip()}\n" for k in sorted(h) if k.startswith("x-amz-"))
    resource = path.split("?")[0]
    sts = f"{method}\n{h.get('content-md5', '')}\n{h.get('content-type', '')}\n{h['date']}\n{amz}{resource}"
    h["authorization"] = f"AWS {ak}:{v2_signature(sts, secret)}"
    return raw_request(server, method, path, headers=h, body=body, sign=False)


def test_raw_v2_header_auth_errors(server, bucket):
    r = raw_v2(server, "PUT", f"/{bucket}/raw.txt", {"x-amz-meta-a": "1"}, body=b"raw v2")
    assert r.status == 200, r
    r = raw_v2(server, "GET", f"/{bucket}/raw.txt", secret="wrong")
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    doc = xml_strip_ns(r.body)
    assert doc.find("StringToSign").text.endswith(f"/{bucket}/raw.txt")
    r = raw_v2(server, "GET", f"/{bucket}/raw.txt", ak="NOBODY")
    assert (r.status, r.code) == (403, "InvalidAccessKeyId"), r
    r = raw_v2(server, "GET", f"/{bucket}/raw.txt", date=formatdate(time.time() - 3600, usegmt=True))
    assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), r
    # An x-amz header added after signing is caught: V2 signs every one of them.
    signed = raw_v2(server, "GET", f"/{bucket}/raw.txt")
    assert signed.status == 200 and signed.body == b"raw v2"


def presigned_v2(server, method, path, expires, secret=SK):
    sts = f"{method}\n\n\n{expires}\n{path}"
    sig = quote(v2_signature(sts, secret), safe="")
    return f"{server.url}{path}?AWSAccessKeyId={AK}&Expires={expires}&Signature={sig}"


def test_raw_v2_presigned_expiry(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="e.txt", Body=b"e")
    assert requests.get(presigned_v2(server, "GET", f"/{bucket}/e.txt", int(time.time()) + 60)).content == b"e"
    r = requests.get(presigned_v2(server, "GET", f"/{bucket}/e.txt", int(time.time()) - 1))
    assert r.status_code == 403 and b"Request has expired" in r.content
    # At most seven days ahead, as a version 4 URL.
    r = requests.get(presigned_v2(server, "GET", f"/{bucket}/e.txt", int(time.time()) + 8 * 86400))
    assert r.status_code == 403 and b"seven days" in r.content
    r = requests.get(presigned_v2(server, "GET", f"/{bucket}/e.txt", int(time.time()) + 60, secret="no"))
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content


@pytest.mark.skipif(USE_RCLONE, reason="vhost needs --vhost-domain")
def test_boto3_v2_virtual_hosted_style(start_server, vhost_domain):
    srv = start_server("--force-path-style=false", "--vhost-domain", "s3.test")
    s3 = make_client(f"http://s3.test:{srv.port}", signature_version="s3", s3={"addressing_style": "virtual"})
    b = unique_bucket_name("v2vhost")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"virtual v2")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"virtual v2"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=60)
    assert url.startswith(f"http://{b}.s3.test:")
    assert requests.get(url, timeout=10).content == b"virtual v2"


def test_s3cmd_with_signature_v2(server, bucket, tmp_path):
    host = f"{server.host}:{server.port}"
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {AK}\nsecret_key = {SK}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = True\n"
        "check_ssl_certificate = False\n")

    def s3cmd(*args):
        p = subprocess.run([str(S3CMD), "-c", str(cfg), *map(str, args)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"s3cmd {args}: {p.stdout}\n{p.stderr}"
        return p.stdout

    src = tmp_path / "f.bin"
    data = os.urandom(200_000)
    src.write_bytes(data)
    s3cmd("put", src, f"s3://{bucket}/s3cmd/f.bin")
    assert f"s3://{bucket}/s3cmd/f.bin" in s3cmd("ls", "-r", f"s3://{bucket}")
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{bucket}/s3cmd/f.bin", back)
    assert back.read_bytes() == data
    # A multipart upload of three parts, each signed with version 2.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    s3cmd("put", "--multipart-chunk-size-mb=5", big, f"s3://{bucket}/s3cmd/big.bin")
    s3cmd("get", f"s3://{bucket}/s3cmd/big.bin", tmp_path / "big.back")
    assert (tmp_path / "big.back").read_bytes() == big.read_bytes()
    s3cmd("del", f"s3://{bucket}/s3cmd/f.bin")
    assert "f.bin" not in s3cmd("ls", "-r", f"s3://{bucket}")
