"""Authentication: SigV4 header auth, presigned URLs, several keys, anonymous mode, and the
x-amz-content-sha256 payload check."""

import datetime as dt
import hashlib

import pytest
import requests
from botocore.config import Config

from conftest import (
    AK,
    AK2,
    SK,
    SK2,
    EMPTY_SHA256,
    expect_error,
    files_under,
    key_path,
    make_client,
    presign_url,
    put,
    raw_request,
    status_of,
    xml_error_code,
)


def presigner(server):
    return make_client(server.url, signature_version="s3v4")


# ------------------------------------------------------------------------------- header auth


def test_wrong_secret(server, bucket):
    c = make_client(server.url, AK, "not-the-secret")
    expect_error(403, "SignatureDoesNotMatch", c.list_objects_v2, Bucket=bucket)
    expect_error(403, "SignatureDoesNotMatch", c.put_object, Bucket=bucket, Key="x", Body=b"x")
    assert "Contents" not in server.client().list_objects_v2(Bucket=bucket)


def test_unknown_access_key(server, bucket):
    c = make_client(server.url, "NOSUCHKEY", SK)
    expect_error(403, "InvalidAccessKeyId", c.list_buckets)
    expect_error(403, "InvalidAccessKeyId", c.get_object, Bucket=bucket, Key="x")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_unsigned_request_denied(server, s3, bucket, bpath, method):
    put(s3, bucket, "secret", b"classified")
    r = raw_request(server, method, f"/{bucket}/secret", sign=False, body=b"overwrite" if method == "PUT" else b"")
    assert r.status == 403, r
    if method != "HEAD":
        assert r.code == "AccessDenied", r
    assert (bpath / "secret").read_bytes() == b"classified"


def test_unsigned_list_buckets_denied(server):
    r = requests.get(server.url + "/", timeout=30)
    assert r.status_code == 403
    assert xml_error_code(r.content) == "AccessDenied"
    assert r.headers.get("x-amz-request-id")
    assert r.headers.get("Content-Type", "").startswith("application/xml")


def test_second_auth_key(start_server):
    srv = start_server(auth=((AK, SK), (AK2, SK2)))
    c1 = srv.client()
    c2 = srv.client(AK2, SK2)
    c1.create_bucket(Bucket="shared")
    c2.put_object(Bucket="shared", Key="from2", Body=b"two")
    assert c1.get_object(Bucket="shared", Key="from2")["Body"].read() == b"two"
    assert [b["Name"] for b in c2.list_buckets()["Buckets"]] == ["shared"]
    expect_error(403, "SignatureDoesNotMatch", srv.client(AK2, SK).list_buckets)
    expect_error(403, "SignatureDoesNotMatch", srv.client(AK, SK2).list_buckets)


def test_anonymous_server_accepts_unsigned(start_server):
    srv = start_server(auth=None)
    c = srv.anon_client()
    c.create_bucket(Bucket="anon")
    c.put_object(Bucket="anon", Key="k", Body=b"anon data")
    assert (srv.data_dir / "anon" / "k").read_bytes() == b"anon data"
    assert c.get_object(Bucket="anon", Key="k")["Body"].read() == b"anon data"
    assert requests.get(f"{srv.url}/anon/k", timeout=30).content == b"anon data"
    r = requests.put(f"{srv.url}/anon/plain", data=b"via requests", timeout=30)
    assert r.status_code == 200
    assert (srv.data_dir / "anon" / "plain").read_bytes() == b"via requests"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="anon")["Contents"]] == ["k", "plain"]
    assert requests.delete(f"{srv.url}/anon/plain", timeout=30).status_code == 204


@pytest.mark.parametrize("region", ["eu-west-9", "auto", "us-east-1"])
def test_any_region_accepted(server, bucket, region):
    c = make_client(server.url, AK, SK, region)
    assert status_of(c.list_objects_v2(Bucket=bucket)) == 200
    c.put_object(Bucket=bucket, Key=f"r-{region}", Body=b"x")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_clock_skew(server, bucket, minutes):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
    r = raw_request(server, "GET", f"/{bucket}", when=when)
    assert (r.status, r.code) == (403, "RequestTimeTooSkewed"), r


def test_small_clock_skew_ok(server, bucket):
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    r = raw_request(server, "GET", f"/{bucket}", when=when)
    assert r.status == 200, r


def test_raw_signer_sanity(server, bucket, bpath):
    # Our hand-made signer must be accepted; the tests below rely on it.
    r = raw_request(server, "PUT", f"/{bucket}/raw", body=b"raw body", headers={"x-amz-meta-k": "v"})
    assert r.status == 200, r
    assert (bpath / "raw").read_bytes() == b"raw body"


def test_malformed_authorization(server, bucket):
    r = raw_request(server, "GET", f"/{bucket}", sign=False,
                    headers={"Authorization": "AWS4-HMAC-SHA256 Credential=garbage", "x-amz-date": "20250101T000000Z",
                             "x-amz-content-sha256": EMPTY_SHA256})
    assert r.status in (400, 403), r
    assert r.code in ("AuthorizationHeaderMalformed", "AccessDenied", "InvalidArgument"), r


# ---------------------------------------------------------------------- x-amz-content-sha256


def test_content_sha256_mismatch(server, s3, bucket, bpath):
    r = raw_request(server, "PUT", f"/{bucket}/mismatch", body=b"BBBB",
                    payload_hash=hashlib.sha256(b"AAAA").hexdigest())
    assert (r.status, r.code) == (400, "XAmzContentSHA256Mismatch"), r
    assert not (bpath / "mismatch").exists()
    assert files_under(bpath) == [], "no partial or temporary file may be left visible"
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="mismatch")


def test_content_sha256_mismatch_keeps_old(server, s3, bucket, bpath):
    put(s3, bucket, "old", b"old body")
    r = raw_request(server, "PUT", f"/{bucket}/old", body=b"new body",
                    payload_hash=hashlib.sha256(b"other").hexdigest())
    assert (r.status, r.code) == (400, "XAmzContentSHA256Mismatch"), r
    assert (bpath / "old").read_bytes() == b"old body"


def test_content_sha256_large_body_mismatch(server, bucket, bpath):
    body = b"z" * (3 * 1024 * 1024)
    r = raw_request(server, "PUT", f"/{bucket}/bigmis", body=body,
                    payload_hash=hashlib.sha256(body[:-1] + b"y").hexdigest())
    assert (r.status, r.code) == (400, "XAmzContentSHA256Mismatch"), r
    assert files_under(bpath) == []


def test_unsigned_payload_accepted(server, bucket, bpath):
    r = raw_request(server, "PUT", f"/{bucket}/unsignedpayload", body=b"free", payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200, r
    assert (bpath / "unsignedpayload").read_bytes() == b"free"


def test_content_sha256_invalid_value(server, bucket, bpath):
    r = raw_request(server, "PUT", f"/{bucket}/badhash", body=b"x", payload_hash="not-a-hash")
    assert 400 <= r.status < 500, r
    assert not (bpath / "badhash").exists()


# ---------------------------------------------------------------------------------- presign


def test_presigned_get(server, s3, bucket):
    put(s3, bucket, "p/get me.txt", b"presigned content")
    url = presigner(server).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p/get me.txt"}, ExpiresIn=300)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200
    assert r.content == b"presigned content"


def test_presigned_put(server, bucket, bpath):
    url = presigner(server).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "p/up+load.bin"}, ExpiresIn=300)
    r = requests.put(url, data=b"uploaded via presign", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("ETag") == '"%s"' % hashlib.md5(b"uploaded via presign").hexdigest()
    assert (bpath / "p" / "up+load.bin").read_bytes() == b"uploaded via presign"


def test_presigned_head(server, s3, bucket):
    put(s3, bucket, "h", b"12345")
    url = presigner(server).generate_presigned_url(
        "head_object", Params={"Bucket": bucket, "Key": "h"}, ExpiresIn=300)
    r = requests.head(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "5"


def test_presigned_delete(server, s3, bucket, bpath):
    put(s3, bucket, "gone", b"x")
    url = presigner(server).generate_presigned_url(
        "delete_object", Params={"Bucket": bucket, "Key": "gone"}, ExpiresIn=300)
    r = requests.delete(url, timeout=30)
    assert r.status_code == 204
    assert not (bpath / "gone").exists()


def test_presigned_wrong_method(server, s3, bucket, bpath):
    put(s3, bucket, "wm", b"x")
    url = presigner(server).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "wm"}, ExpiresIn=300)
    r = requests.delete(url, timeout=30)
    assert r.status_code == 403
    assert (bpath / "wm").exists()


def test_presigned_tampered_key(server, s3, bucket):
    put(s3, bucket, "a", b"a")
    put(s3, bucket, "b", b"b")
    url = presigner(server).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"})
    r = requests.get(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"), timeout=30)
    assert r.status_code == 403
    assert xml_error_code(r.content) == "SignatureDoesNotMatch"


def test_presigned_wrong_secret(server, s3, bucket):
    put(s3, bucket, "ws", b"x")
    url = make_client(server.url, AK, "wrong", signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "ws"})
    r = requests.get(url, timeout=30)
    assert r.status_code == 403
    assert xml_error_code(r.content) == "SignatureDoesNotMatch"


def test_own_presigner_sanity(server, s3, bucket):
    put(s3, bucket, "mine", b"mine")
    r = requests.get(presign_url(server, "GET", f"/{bucket}/mine"), timeout=30)
    assert r.status_code == 200 and r.content == b"mine"


def test_presigned_expired(server, s3, bucket):
    put(s3, bucket, "exp", b"x")
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    r = requests.get(presign_url(server, "GET", f"/{bucket}/exp", expires=3600, when=when), timeout=30)
    assert r.status_code == 403
    assert xml_error_code(r.content) == "AccessDenied"


def test_presigned_old_but_valid(server, s3, bucket):
    # Presigned URLs are meant to be used later: no 15-minute skew check on the past.
    put(s3, bucket, "old", b"x")
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    r = requests.get(presign_url(server, "GET", f"/{bucket}/old", expires=3 * 3600, when=when), timeout=30)
    assert r.status_code == 200


def test_presigned_expired_put_writes_nothing(server, bucket, bpath):
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    r = requests.put(presign_url(server, "PUT", f"/{bucket}/late", expires=60, when=when), data=b"x", timeout=30)
    assert r.status_code == 403
    assert not (bpath / "late").exists()


def test_presigned_expiry_over_seven_days(server, s3, bucket):
    put(s3, bucket, "week", b"x")
    r = requests.get(presign_url(server, "GET", f"/{bucket}/week", expires=604801), timeout=30)
    assert r.status_code in (400, 403), r.text
    assert xml_error_code(r.content) in ("AuthorizationQueryParametersError", "AccessDenied", "InvalidArgument")
    r = requests.get(presign_url(server, "GET", f"/{bucket}/week", expires=604800), timeout=30)
    assert r.status_code == 200


def test_presigned_future_date_rejected(server, s3, bucket):
    put(s3, bucket, "fut", b"x")
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)
    r = requests.get(presign_url(server, "GET", f"/{bucket}/fut", expires=3600, when=when), timeout=30)
    assert r.status_code in (400, 403)


def test_presigned_unsigned_meta_header_rejected(server, bucket, bpath):
    url = presigner(server).generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pm"})
    r = requests.put(url, data=b"x", headers={"x-amz-meta-sneaky": "1"}, timeout=30)
    assert r.status_code == 403
    assert not (bpath / "pm").exists()


def test_presigned_special_key(server, s3, bucket):
    key = "dir/sp ace+plus%ünï.txt"
    put(s3, bucket, key, b"special")
    url = presigner(server).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert requests.get(url, timeout=30).content == b"special"
    r = requests.get(presign_url(server, "GET", f"/{bucket}/{key_path(key)}"), timeout=30)
    assert r.status_code == 200 and r.content == b"special"
