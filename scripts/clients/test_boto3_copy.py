"""CopyObject with boto3."""

import datetime as dt
import os

import pytest

from conftest import (
    upstream_cannot,
    expect_error,
    get_bytes,
    headers_of,
    put,
    quoted_md5,
    raw_request,
    status_of,
    unique_bucket_name,
    xml_strip_ns,
)

BODY = b"copy me please" * 100


@pytest.fixture
def src(s3, bucket):
    put(
        s3, bucket, "src/obj.txt", BODY,
        ContentType="text/x-source",
        CacheControl="max-age=5",
        ContentDisposition="inline",
        Metadata={"orig": "yes", "color": "blue"},
    )
    return bucket


def test_copy_same_bucket(s3, src, bpath):
    r = s3.copy_object(Bucket=src, Key="dst/copy.txt", CopySource={"Bucket": src, "Key": "src/obj.txt"})
    assert status_of(r) == 200
    assert r["CopyObjectResult"]["ETag"] == quoted_md5(BODY)
    assert r["CopyObjectResult"]["LastModified"] is not None
    assert (bpath / "dst" / "copy.txt").read_bytes() == BODY
    assert (bpath / "src" / "obj.txt").read_bytes() == BODY
    h = s3.head_object(Bucket=src, Key="dst/copy.txt")
    assert h["ETag"] == quoted_md5(BODY)
    assert h["ContentLength"] == len(BODY)


def test_copy_result_xml(server, src):
    r = raw_request(server, "PUT", f"/{src}/xmlcopy", headers={"x-amz-copy-source": f"/{src}/src/obj.txt"})
    assert r.status == 200, r
    root = xml_strip_ns(r.body)
    assert root.tag == "CopyObjectResult"
    assert root.findtext("ETag") == quoted_md5(BODY)
    lm = root.findtext("LastModified")
    assert lm and lm.endswith("Z")
    assert r.header("Content-Type", "").startswith("application/xml")


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_copy_across_buckets(s3, src, bucket2, data_dir):
    r = s3.copy_object(Bucket=bucket2, Key="x/y.txt", CopySource={"Bucket": src, "Key": "src/obj.txt"})
    assert r["CopyObjectResult"]["ETag"] == quoted_md5(BODY)
    assert (data_dir / bucket2 / "x" / "y.txt").read_bytes() == BODY
    h = s3.head_object(Bucket=bucket2, Key="x/y.txt")
    assert h["Metadata"] == {"orig": "yes", "color": "blue"}
    assert h["ContentType"] == "text/x-source"


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_copy_directive_copy_keeps_source_metadata(s3, src):
    # Default directive is COPY: request metadata and Content-Type are ignored.
    s3.copy_object(
        Bucket=src, Key="c1", CopySource={"Bucket": src, "Key": "src/obj.txt"},
        Metadata={"new": "1"}, ContentType="text/x-ignored",
    )
    h = s3.head_object(Bucket=src, Key="c1")
    assert h["Metadata"] == {"orig": "yes", "color": "blue"}
    assert h["ContentType"] == "text/x-source"
    assert h["CacheControl"] == "max-age=5"
    assert h["ContentDisposition"] == "inline"
    s3.copy_object(Bucket=src, Key="c2", CopySource={"Bucket": src, "Key": "src/obj.txt"}, MetadataDirective="COPY")
    assert s3.head_object(Bucket=src, Key="c2")["Metadata"] == {"orig": "yes", "color": "blue"}


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_copy_directive_replace(s3, src):
    s3.copy_object(
        Bucket=src, Key="r1", CopySource={"Bucket": src, "Key": "src/obj.txt"},
        MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="text/x-replaced",
    )
    h = s3.head_object(Bucket=src, Key="r1")
    assert h["Metadata"] == {"new": "1"}
    assert h["ContentType"] == "text/x-replaced"
    assert "CacheControl" not in h
    assert "ContentDisposition" not in h
    assert get_bytes(s3, src, "r1") == BODY
    # The source is untouched.
    hs = s3.head_object(Bucket=src, Key="src/obj.txt")
    assert hs["Metadata"] == {"orig": "yes", "color": "blue"}
    assert hs["ContentType"] == "text/x-source"


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_copy_response_does_not_echo_copy_headers(s3, src):
    s3.copy_object(Bucket=src, Key="e1", CopySource={"Bucket": src, "Key": "src/obj.txt"})
    h = headers_of(s3.head_object(Bucket=src, Key="e1"))
    assert "x-amz-copy-source" not in h
    assert "x-amz-metadata-directive" not in h
    assert "x-amz-meta-mtime" not in h


def test_self_copy_without_replace_is_invalid(s3, src, bpath):
    expect_error(400, "InvalidRequest", s3.copy_object, Bucket=src, Key="src/obj.txt",
                 CopySource={"Bucket": src, "Key": "src/obj.txt"})
    expect_error(400, "InvalidRequest", s3.copy_object, Bucket=src, Key="src/obj.txt",
                 CopySource={"Bucket": src, "Key": "src/obj.txt"}, MetadataDirective="COPY")
    assert (bpath / "src" / "obj.txt").read_bytes() == BODY
    assert s3.head_object(Bucket=src, Key="src/obj.txt")["Metadata"] == {"orig": "yes", "color": "blue"}


def test_self_copy_with_replace_updates_metadata(s3, src, bpath):
    r = s3.copy_object(
        Bucket=src, Key="src/obj.txt", CopySource={"Bucket": src, "Key": "src/obj.txt"},
        MetadataDirective="REPLACE", Metadata={"fresh": "meta"}, ContentType="text/x-new",
    )
    assert r["CopyObjectResult"]["ETag"] == quoted_md5(BODY)
    h = s3.head_object(Bucket=src, Key="src/obj.txt")
    assert h["Metadata"] == {"fresh": "meta"}
    assert h["ContentType"] == "text/x-new"
    assert (bpath / "src" / "obj.txt").read_bytes() == BODY


def test_copy_mtime_replace_sets_mtime(s3, src, bpath):
    # rclone clients update modtimes with a self-copy REPLACE carrying x-amz-meta-mtime.
    s3.copy_object(
        Bucket=src, Key="src/obj.txt", CopySource={"Bucket": src, "Key": "src/obj.txt"},
        MetadataDirective="REPLACE", Metadata={"mtime": "1500000000"},
    )
    assert abs(os.stat(bpath / "src" / "obj.txt").st_mtime - 1500000000) < 0.01
    assert get_bytes(s3, src, "src/obj.txt") == BODY


def test_copy_missing_source(s3, bucket, bpath):
    expect_error(404, "NoSuchKey", s3.copy_object, Bucket=bucket, Key="dst",
                 CopySource={"Bucket": bucket, "Key": "nope"})
    assert not (bpath / "dst").exists()


def test_copy_missing_source_bucket(s3, bucket):
    expect_error(404, "NoSuchBucket", s3.copy_object, Bucket=bucket, Key="dst",
                 CopySource={"Bucket": unique_bucket_name("nope"), "Key": "k"})


def test_copy_missing_dest_bucket(s3, src):
    expect_error(404, "NoSuchBucket", s3.copy_object, Bucket=unique_bucket_name("nope"), Key="dst",
                 CopySource={"Bucket": src, "Key": "src/obj.txt"})


def _src_lm(s3, bucket):
    return s3.head_object(Bucket=bucket, Key="src/obj.txt")["LastModified"]


@pytest.mark.parametrize(
    "cond_fn, ok",
    [
        (lambda etag, lm: {"CopySourceIfMatch": etag}, True),
        (lambda etag, lm: {"CopySourceIfMatch": quoted_md5(b"other")}, False),
        (lambda etag, lm: {"CopySourceIfNoneMatch": quoted_md5(b"other")}, True),
        (lambda etag, lm: {"CopySourceIfNoneMatch": etag}, False),
        (lambda etag, lm: {"CopySourceIfModifiedSince": lm - dt.timedelta(days=1)}, True),
        (lambda etag, lm: {"CopySourceIfModifiedSince": lm}, False),
        (lambda etag, lm: {"CopySourceIfUnmodifiedSince": lm}, True),
        (lambda etag, lm: {"CopySourceIfUnmodifiedSince": lm - dt.timedelta(days=1)}, False),
        (lambda etag, lm: {"CopySourceIfMatch": etag,
                           "CopySourceIfUnmodifiedSince": lm - dt.timedelta(days=1)}, True),
        (lambda etag, lm: {"CopySourceIfNoneMatch": etag,
                           "CopySourceIfModifiedSince": lm - dt.timedelta(days=1)}, False),
    ],
    ids=["if-match", "if-match-fail", "if-none-match", "if-none-match-fail", "ims", "ims-fail",
         "ius", "ius-fail", "if-match-beats-ius", "inm-fail-with-ims"],
)
def test_copy_source_conditions(s3, src, bpath, cond_fn, ok):
    kw = cond_fn(quoted_md5(BODY), _src_lm(s3, src))
    if ok:
        r = s3.copy_object(Bucket=src, Key="cond", CopySource={"Bucket": src, "Key": "src/obj.txt"}, **kw)
        assert r["CopyObjectResult"]["ETag"] == quoted_md5(BODY)
        assert (bpath / "cond").read_bytes() == BODY
    else:
        expect_error(412, "PreconditionFailed", s3.copy_object, Bucket=src, Key="cond",
                     CopySource={"Bucket": src, "Key": "src/obj.txt"}, **kw)
        assert not (bpath / "cond").exists()


@upstream_cannot("rclone", "rclone serve s3 reports every object's mtime as x-amz-meta-mtime")
def test_copy_overwrites_destination(s3, src):
    put(s3, src, "dst", b"old", Metadata={"old": "1"})
    s3.copy_object(Bucket=src, Key="dst", CopySource={"Bucket": src, "Key": "src/obj.txt"})
    assert get_bytes(s3, src, "dst") == BODY
    assert s3.head_object(Bucket=src, Key="dst")["Metadata"] == {"orig": "yes", "color": "blue"}


@pytest.mark.parametrize("key", ["sp ace+plus%.txt", "ünï/cødé?&=.txt"])
def test_copy_special_key_names(s3, bucket, bpath, key):
    put(s3, bucket, key, b"special")
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert (bpath / (key + ".copy")).read_bytes() == b"special"


def test_copy_source_string_form(s3, src):
    # "bucket/key" string form, with a leading slash too.
    s3.copy_object(Bucket=src, Key="s1", CopySource=f"{src}/src/obj.txt")
    s3.copy_object(Bucket=src, Key="s2", CopySource=f"/{src}/src/obj.txt")
    assert get_bytes(s3, src, "s1") == BODY
    assert get_bytes(s3, src, "s2") == BODY


def test_copy_empty_object(s3, bucket, bpath):
    put(s3, bucket, "empty", b"")
    r = s3.copy_object(Bucket=bucket, Key="empty2", CopySource={"Bucket": bucket, "Key": "empty"})
    assert r["CopyObjectResult"]["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert (bpath / "empty2").read_bytes() == b""
