"""PutObject, GetObject and HeadObject with boto3 (plus raw HTTP where boto3 hides the wire)."""

import datetime as dt
import gzip
import hashlib
import os
import time

import pytest

from conftest import (
    upstream_cannot,
    local_only,
    expect_error,
    get_bytes,
    headers_of,
    http_date,
    key_path,
    md5b64,
    md5hex,
    put,
    quoted_md5,
    raw_request,
    status_of,
)

BODY = b"0123456789abcdef"  # 16 bytes


# ---------------------------------------------------------------------------------- PutObject


def test_put_get_roundtrip_on_disk(s3, bucket, bpath):
    body = os.urandom(100_000)
    r = put(s3, bucket, "dir/sub/obj.bin", body)
    assert status_of(r) == 200
    assert r["ETag"] == quoted_md5(body)
    assert (bpath / "dir" / "sub" / "obj.bin").read_bytes() == body
    g = s3.get_object(Bucket=bucket, Key="dir/sub/obj.bin")
    assert g["Body"].read() == body
    assert g["ContentLength"] == len(body)
    assert g["ETag"] == quoted_md5(body)


def test_put_empty_object(s3, bucket, bpath):
    r = put(s3, bucket, "empty", b"")
    assert r["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert (bpath / "empty").read_bytes() == b""
    h = s3.head_object(Bucket=bucket, Key="empty")
    assert h["ContentLength"] == 0
    assert get_bytes(s3, bucket, "empty") == b""


def test_put_overwrite(s3, bucket, bpath):
    put(s3, bucket, "k", b"first version")
    put(s3, bucket, "k", b"second")
    assert get_bytes(s3, bucket, "k") == b"second"
    assert (bpath / "k").read_bytes() == b"second"
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == quoted_md5(b"second")


def test_put_with_default_checksum_headers_accepted(s3, bucket):
    # boto3 >= 1.36 sends x-amz-checksum-crc32 + x-amz-sdk-checksum-algorithm on http.
    r = put(s3, bucket, "crc", b"hello checksum")
    assert status_of(r) == 200
    r = put(s3, bucket, "sha", b"hello checksum", ChecksumAlgorithm="SHA256")
    assert status_of(r) == 200
    assert get_bytes(s3, bucket, "sha") == b"hello checksum"


def test_put_content_md5_good(s3, bucket):
    r = put(s3, bucket, "md5ok", BODY, ContentMD5=md5b64(BODY))
    assert r["ETag"] == quoted_md5(BODY)
    assert get_bytes(s3, bucket, "md5ok") == BODY


def test_put_content_md5_mismatch_bad_digest(s3, bucket, bpath):
    expect_error(400, "BadDigest", put, s3, bucket, "md5bad", BODY, ContentMD5=md5b64(b"other"))
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="md5bad")
    assert not (bpath / "md5bad").exists()


def test_put_content_md5_mismatch_keeps_old_object(s3, bucket):
    put(s3, bucket, "keep", b"original")
    expect_error(400, "BadDigest", put, s3, bucket, "keep", BODY, ContentMD5=md5b64(b"other"))
    assert get_bytes(s3, bucket, "keep") == b"original"


@pytest.mark.parametrize("bad", ["not-base64!!", "AAAA", "", "ZGVhZGJlZWY="])
def test_put_content_md5_malformed_invalid_digest(server, bucket, bpath, bad):
    # Raw request: boto3 refuses to send some of these. "AAAA" decodes to 3 bytes, not 16.
    r = raw_request(server, "PUT", f"/{bucket}/md5malformed", headers={"Content-MD5": bad}, body=BODY)
    assert (r.status, r.code) == (400, "InvalidDigest"), r
    assert not (bpath / "md5malformed").exists()


def test_metadata_roundtrip_lowercase(s3, bucket):
    meta = {"Foo": "Bar Baz", "MixedCase-Name": "v=1;x", "num": "42"}
    put(s3, bucket, "meta", b"m", Metadata=meta)
    h = s3.head_object(Bucket=bucket, Key="meta")
    assert h["Metadata"] == {"foo": "Bar Baz", "mixedcase-name": "v=1;x", "num": "42"}
    g = s3.get_object(Bucket=bucket, Key="meta")
    assert g["Metadata"] == {"foo": "Bar Baz", "mixedcase-name": "v=1;x", "num": "42"}


def test_metadata_header_names_lowercase_on_wire(server, s3, bucket):
    put(s3, bucket, "metawire", b"m", Metadata={"CamelKey": "Value"})
    r = raw_request(server, "HEAD", f"/{bucket}/metawire")
    assert r.status == 200
    meta_names = [n for n in r.header_names() if n.lower().startswith("x-amz-meta-")]
    assert meta_names == ["x-amz-meta-camelkey"]
    assert r.header("x-amz-meta-camelkey") == "Value"


def test_no_metadata_means_empty_dict(s3, bucket):
    put(s3, bucket, "nometa", b"x")
    assert s3.head_object(Bucket=bucket, Key="nometa")["Metadata"] == {}


def test_metadata_too_large(s3, bucket, bpath):
    expect_error(400, "MetadataTooLarge", put, s3, bucket, "bigmeta", b"x", Metadata={"big": "v" * 2100})
    expect_error(
        400, "MetadataTooLarge", put, s3, bucket, "bigmeta", b"x",
        Metadata={f"k{i}": "v" * 100 for i in range(25)},
    )
    assert not (bpath / "bigmeta").exists()


def test_metadata_under_limit_ok(s3, bucket):
    meta = {"big": "v" * 1500}
    put(s3, bucket, "okmeta", b"x", Metadata=meta)
    assert s3.head_object(Bucket=bucket, Key="okmeta")["Metadata"] == meta


@upstream_cannot("rclone", "rclone serve s3 does not keep Expires")
def test_standard_headers_roundtrip(s3, bucket):
    body = gzip.compress(b"hello world " * 10)
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    put(
        s3, bucket, "std.txt.gz", body,
        ContentType="text/x-custom; charset=latin1",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="report.txt"',
        ContentLanguage="de-CH",
        CacheControl="max-age=3600, public",
        Expires=expires,
    )
    for r in (s3.head_object(Bucket=bucket, Key="std.txt.gz"), s3.get_object(Bucket=bucket, Key="std.txt.gz")):
        h = headers_of(r)
        assert h["content-type"] == "text/x-custom; charset=latin1"
        assert h["content-encoding"] == "gzip"
        assert h["content-disposition"] == 'attachment; filename="report.txt"'
        assert h["content-language"] == "de-CH"
        assert h["cache-control"] == "max-age=3600, public"
        assert h["expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert get_bytes(s3, bucket, "std.txt.gz") == body


def test_default_content_type(s3, bucket):
    # boto3 sends no Content-Type: S3 answers binary/octet-stream (we accept the usual default too).
    put(s3, bucket, "noct", b"x")
    ct = s3.head_object(Bucket=bucket, Key="noct")["ContentType"]
    assert ct in ("binary/octet-stream", "application/octet-stream")


def test_put_if_none_match_star(s3, bucket):
    r = put(s3, bucket, "inm", b"first", IfNoneMatch="*")
    assert status_of(r) == 200
    expect_error(412, "PreconditionFailed", put, s3, bucket, "inm", b"second", IfNoneMatch="*")
    assert get_bytes(s3, bucket, "inm") == b"first"


def test_put_if_match(s3, bucket):
    etag = put(s3, bucket, "im", b"v1")["ETag"]
    expect_error(412, "PreconditionFailed", put, s3, bucket, "im", b"v2", IfMatch=quoted_md5(b"nope"))
    assert get_bytes(s3, bucket, "im") == b"v1"
    r = put(s3, bucket, "im", b"v2", IfMatch=etag)
    assert r["ETag"] == quoted_md5(b"v2")
    assert get_bytes(s3, bucket, "im") == b"v2"


def test_put_if_match_absent_key(s3, bucket, bpath):
    expect_error(404, "NoSuchKey", put, s3, bucket, "absent", b"v", IfMatch=quoted_md5(b"v"))
    assert not (bpath / "absent").exists()


def test_put_mtime_metadata_sets_file_mtime(s3, bucket, bpath):
    put(s3, bucket, "mt/file", b"x", Metadata={"mtime": "1600000000.5"})
    st = os.stat(bpath / "mt" / "file")
    assert abs(st.st_mtime - 1600000000.5) < 0.01
    h = s3.head_object(Bucket=bucket, Key="mt/file")
    assert h["LastModified"] == dt.datetime.fromtimestamp(1600000000, dt.timezone.utc)
    assert "Mtime" not in h["Metadata"]
    assert "mtime" not in headers_of(h)  # no bare Mtime header


@local_only("a file's mtime on disk is the upstream's to set; x-amz-meta-mtime is user metadata it receives")
def test_put_mtime_ignored_with_no_modtime(start_server):
    srv = start_server("--no-modtime")
    c = srv.client()
    c.create_bucket(Bucket="nomod")
    before = time.time()
    c.put_object(Bucket="nomod", Key="f", Body=b"x", Metadata={"mtime": "1600000000.5"})
    st = os.stat(srv.data_dir / "nomod" / "f")
    assert st.st_mtime > before - 120, "mtime was set from x-amz-meta-mtime despite --no-modtime"


# ---------------------------------------------------------------------------- GET / HEAD basics


def test_etag_is_quoted_md5(server, s3, bucket):
    put(s3, bucket, "e", BODY)
    h = headers_of(s3.head_object(Bucket=bucket, Key="e"))
    assert h["etag"] == f'"{md5hex(BODY)}"'
    r = raw_request(server, "GET", f"/{bucket}/e")
    assert r.header("ETag") == f'"{md5hex(BODY)}"'
    assert r.body == BODY
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Content-Length") == "16"


def test_head_content_length_and_no_body(server, s3, bucket):
    body = os.urandom(200_000)
    put(s3, bucket, "big", body)
    r = raw_request(server, "HEAD", f"/{bucket}/big")
    assert r.status == 200
    assert r.header("Content-Length") == str(len(body))
    assert r.header("Transfer-Encoding") is None
    assert r.body == b""
    g = raw_request(server, "GET", f"/{bucket}/big")
    assert g.header("Content-Length") == str(len(body))
    assert g.body == body


def test_last_modified_is_file_mtime(s3, bucket, bpath):
    put(s3, bucket, "lm", b"data")
    os.utime(bpath / "lm", (1500000000, 1500000000))
    h = s3.head_object(Bucket=bucket, Key="lm")
    assert h["LastModified"] == dt.datetime(2017, 7, 14, 2, 40, 0, tzinfo=dt.timezone.utc)
    assert headers_of(h)["last-modified"] == "Fri, 14 Jul 2017 02:40:00 GMT"
    assert h["ETag"] == quoted_md5(b"data")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert listed["LastModified"] == dt.datetime(2017, 7, 14, 2, 40, 0, tzinfo=dt.timezone.utc)


def test_last_modified_after_put_matches_disk(s3, bucket, bpath):
    put(s3, bucket, "lm2", b"data")
    st = os.stat(bpath / "lm2")
    h = s3.head_object(Bucket=bucket, Key="lm2")
    assert h["LastModified"] == dt.datetime.fromtimestamp(int(st.st_mtime), dt.timezone.utc)


ECHO_HEADERS = [
    "x-amz-content-sha256",
    "x-amz-date",
    "authorization",
    "x-amz-sdk-checksum-algorithm",
    "content-md5",
    "expect",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "mtime",
    "x-amz-meta-mtime",
    "user-agent",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
]


def test_nothing_from_request_echoed(server, s3, bucket):
    put(s3, bucket, "echo", b"x", Metadata={"a": "1"}, ContentMD5=md5b64(b"x"))
    for r in (s3.head_object(Bucket=bucket, Key="echo"), s3.get_object(Bucket=bucket, Key="echo")):
        h = headers_of(r)
        for name in ECHO_HEADERS:
            assert name not in h, f"{name} echoed back: {h}"
        assert r["Metadata"] == {"a": "1"}
    raw = raw_request(server, "HEAD", f"/{bucket}/echo", headers={"x-amz-meta-b": "2", "x-custom": "y"})
    names = {n.lower() for n in raw.header_names()}
    assert "x-amz-meta-b" not in names and "x-custom" not in names
    assert "x-amz-content-sha256" not in names and "x-amz-date" not in names


def test_get_missing_key(s3, bucket):
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="missing")
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="missing")


def test_get_directory_is_not_an_object(s3, bucket):
    put(s3, bucket, "dir/inner", b"x")
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="dir")
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="dir")


# ---------------------------------------------------------------------------------- Ranges (B10)


@pytest.fixture
def obj16(s3, bucket):
    put(s3, bucket, "r", BODY)
    return bucket


@pytest.mark.parametrize(
    "rng, first, last, data",
    [
        ("bytes=2-5", 2, 5, b"2345"),
        ("bytes=0-0", 0, 0, b"0"),
        ("bytes=10-", 10, 15, b"abcdef"),
        ("bytes=-3", 13, 15, b"def"),
        ("bytes=10-100", 10, 15, b"abcdef"),  # end clamped
        ("bytes=-100", 0, 15, BODY),  # suffix longer than object
        ("bytes=15-15", 15, 15, b"f"),
    ],
)
def test_range(s3, obj16, rng, first, last, data):
    g = s3.get_object(Bucket=obj16, Key="r", Range=rng)
    assert status_of(g) == 206
    assert g["ContentRange"] == f"bytes {first}-{last}/16"
    assert g["ContentLength"] == len(data)
    assert g["Body"].read() == data
    assert g["ETag"] == quoted_md5(BODY)


@pytest.mark.parametrize("rng", ["bytes=16-", "bytes=100-200", "bytes=16-20"])
def test_range_not_satisfiable(server, s3, obj16, rng):
    expect_error(416, "InvalidRange", s3.get_object, Bucket=obj16, Key="r", Range=rng)
    r = raw_request(server, "GET", f"/{obj16}/r", headers={"Range": rng})
    assert r.status == 416
    assert r.header("Content-Range") == "bytes */16"


def test_range_on_empty_object(s3, bucket):
    put(s3, bucket, "z", b"")
    expect_error(416, "InvalidRange", s3.get_object, Bucket=bucket, Key="z", Range="bytes=0-")


@pytest.mark.parametrize("rng", ["bytes=0-1,3-4", "bytes=0-0,-1"])
def test_multi_range_ignored(s3, obj16, rng):
    g = s3.get_object(Bucket=obj16, Key="r", Range=rng)
    assert status_of(g) == 200
    assert "ContentRange" not in g
    assert g["Body"].read() == BODY


@pytest.mark.parametrize("rng", ["bytes=5-2", "bytes=abc", "items=0-1"])
def test_invalid_range_syntax_ignored(s3, obj16, rng):
    g = s3.get_object(Bucket=obj16, Key="r", Range=rng)
    assert status_of(g) == 200
    assert g["Body"].read() == BODY


def test_head_with_range(server, obj16):
    r = raw_request(server, "HEAD", f"/{obj16}/r", headers={"Range": "bytes=2-5"})
    assert r.status == 206
    assert r.header("Content-Range") == "bytes 2-5/16"
    assert r.header("Content-Length") == "4"


# --------------------------------------------------------------------------- Conditionals (B11)


@pytest.fixture
def cond(s3, bucket, bpath):
    """An object with a known sub-second mtime: 2020-09-13 12:26:40.7 UTC."""
    put(s3, bucket, "c", BODY)
    os.utime(bpath / "c", (1600000000.7, 1600000000.7))
    return bucket


LM = 1600000000
ETAG = quoted_md5(BODY)
NOT_ETAG = quoted_md5(b"other")


def ts(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


@pytest.mark.parametrize("method", ["get_object", "head_object"])
@pytest.mark.parametrize(
    "kw, expect",
    [
        ({"IfMatch": ETAG}, 200),
        ({"IfMatch": md5hex(BODY)}, 200),  # unquoted etag compares equal
        ({"IfMatch": "*"}, 200),
        ({"IfMatch": f"{NOT_ETAG}, {ETAG}"}, 200),
        ({"IfMatch": NOT_ETAG}, 412),
        ({"IfNoneMatch": ETAG}, 304),
        ({"IfNoneMatch": "*"}, 304),
        ({"IfNoneMatch": NOT_ETAG}, 200),
        ({"IfModifiedSince": ts(LM)}, 304),  # whole seconds: equal means not modified
        ({"IfModifiedSince": ts(LM + 60)}, 304),
        ({"IfModifiedSince": ts(LM - 60)}, 200),
        ({"IfUnmodifiedSince": ts(LM)}, 200),
        ({"IfUnmodifiedSince": ts(LM - 60)}, 412),
        ({"IfUnmodifiedSince": ts(LM + 60)}, 200),
        ({"IfMatch": ETAG, "IfUnmodifiedSince": ts(LM - 60)}, 200),  # If-Match wins over IUS
        ({"IfNoneMatch": ETAG, "IfModifiedSince": ts(LM - 60)}, 304),  # INM false + IMS true
        ({"IfMatch": NOT_ETAG, "IfNoneMatch": NOT_ETAG}, 412),
    ],
)
def test_conditional_get_head(s3, cond, method, kw, expect):
    fn = getattr(s3, method)
    if expect == 200:
        r = fn(Bucket=cond, Key="c", **kw)
        assert status_of(r) == 200
        assert r["ETag"] == ETAG
    elif expect == 304:
        expect_error(304, None, fn, Bucket=cond, Key="c", **kw)
    else:
        expect_error(412, "PreconditionFailed" if method == "get_object" else "412", fn, Bucket=cond, Key="c", **kw)


def test_not_modified_carries_etag_no_body(server, cond):
    r = raw_request(server, "GET", f"/{cond}/c", headers={"If-None-Match": ETAG})
    assert r.status == 304
    assert r.body == b""
    assert r.header("ETag") == ETAG
    assert r.header("Last-Modified") == http_date(LM)


def test_conditionals_before_range(s3, cond):
    expect_error(412, "PreconditionFailed", s3.get_object, Bucket=cond, Key="c", Range="bytes=100-", IfMatch=NOT_ETAG)
    g = s3.get_object(Bucket=cond, Key="c", Range="bytes=0-1", IfMatch=ETAG)
    assert status_of(g) == 206 and g["Body"].read() == b"01"


def test_unparsable_date_ignored(server, cond):
    r = raw_request(server, "GET", f"/{cond}/c", headers={"If-Modified-Since": "yesterday-ish"})
    assert r.status == 200 and r.body == BODY


# ---------------------------------------------------------------------- response-content-* overrides


def test_response_overrides(s3, bucket):
    put(s3, bucket, "ov", b"x", ContentType="text/plain")
    g = s3.get_object(
        Bucket=bucket, Key="ov",
        ResponseContentType="application/x-override",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseContentEncoding="identity",
        ResponseContentLanguage="fr",
        ResponseCacheControl="no-store",
        ResponseExpires=dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    )
    h = headers_of(g)
    assert h["content-type"] == "application/x-override"
    assert h["content-disposition"] == 'attachment; filename="x.bin"'
    assert h["content-encoding"] == "identity"
    assert h["content-language"] == "fr"
    assert h["cache-control"] == "no-store"
    assert h["expires"] == "Tue, 06 May 2031 07:08:09 GMT"
    assert g["Body"].read() == b"x"
    # The override is per request: the stored value is unchanged.
    assert s3.head_object(Bucket=bucket, Key="ov")["ContentType"] == "text/plain"


def test_response_override_on_head(s3, bucket):
    put(s3, bucket, "ovh", b"x", ContentType="text/plain")
    h = s3.head_object(Bucket=bucket, Key="ovh", ResponseContentType="image/png")
    assert h["ContentType"] == "image/png"


# ---------------------------------------------------------------------------------- Odd keys


@pytest.mark.parametrize(
    "key",
    [
        "sp ace.txt",
        "plus+sign",
        "per%cent",
        "ünïcødé/文件.txt",
        "emoji-\U0001F600",
        "q?x=1&y=2#frag",
        "semi;colon:equals=",
        "tilde~star*paren(1)",
        "back\\slash",
        "a-very/deep/path/that/keeps/going/file",
    ],
)
def test_odd_keys_roundtrip(s3, bucket, bpath, key):
    body = key.encode()
    r = put(s3, bucket, key, body)
    assert r["ETag"] == quoted_md5(body)
    assert get_bytes(s3, bucket, key) == body
    assert (bpath / key).read_bytes() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_raw_path_encoding_plus_is_literal(server, s3, bucket, bpath):
    # A raw '+' in the path is a plus, not a space.
    r = raw_request(server, "PUT", f"/{bucket}/a+b", body=b"plus")
    assert r.status == 200, r
    assert (bpath / "a+b").read_bytes() == b"plus"
    assert get_bytes(s3, bucket, "a+b") == b"plus"
    r = raw_request(server, "GET", f"/{bucket}/{key_path('a+b')}")
    assert r.body == b"plus"


def test_common_response_headers(server, s3, bucket):
    put(s3, bucket, "h", b"x")
    for method, path in [("GET", "/"), ("GET", f"/{bucket}"), ("GET", f"/{bucket}/h"), ("HEAD", f"/{bucket}/h"),
                         ("GET", f"/{bucket}/missing")]:
        r = raw_request(server, method, path)
        assert r.header("x-amz-request-id"), (method, path, r.header_list)
        if method == "GET" and path != f"/{bucket}/h":
            assert r.header("Content-Type", "").startswith("application/xml"), (path, r.header("Content-Type"))


def test_error_body_shape(server, bucket):
    r = raw_request(server, "GET", f"/{bucket}/missing-key")
    assert r.status == 404
    assert r.header("Content-Type", "").startswith("application/xml")
    from conftest import xml_strip_ns

    root = xml_strip_ns(r.body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Message")
    assert root.findtext("RequestId") == r.header("x-amz-request-id")
    h = raw_request(server, "HEAD", f"/{bucket}/missing-key")
    assert h.status == 404 and h.body == b""
