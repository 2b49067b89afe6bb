"""DeleteObject and DeleteObjects with boto3, and the on-disk cleanup of empty directories."""

import base64
import hashlib

import pytest

from conftest import (
    upstream_cannot,
    local_only,
    expect_error,
    headers_of,
    md5b64,
    put,
    raw_request,
    status_of,
    unique_bucket_name,
    xml_strip_ns,
)


def test_delete_object(s3, bucket, bpath):
    put(s3, bucket, "k", b"x")
    r = s3.delete_object(Bucket=bucket, Key="k")
    assert status_of(r) == 204
    assert not (bpath / "k").exists()
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="k")


def test_delete_missing_key_is_204(s3, bucket):
    r = s3.delete_object(Bucket=bucket, Key="never/existed")
    assert status_of(r) == 204


def test_delete_missing_bucket(s3):
    expect_error(404, "NoSuchBucket", s3.delete_object, Bucket=unique_bucket_name("nope"), Key="k")


def test_delete_cleans_empty_parents(s3, bucket, bpath):
    put(s3, bucket, "a/b/c/file", b"x")
    put(s3, bucket, "a/keep", b"y")
    s3.delete_object(Bucket=bucket, Key="a/b/c/file")
    assert not (bpath / "a" / "b").exists()
    assert (bpath / "a" / "keep").read_bytes() == b"y"
    s3.delete_object(Bucket=bucket, Key="a/keep")
    assert not (bpath / "a").exists()
    assert bpath.is_dir(), "the bucket directory itself must stay"
    assert list(p.name for p in bpath.iterdir() if not p.name.startswith(".s3serve")) == []
    assert status_of(s3.head_bucket(Bucket=bucket)) == 200


def test_delete_last_object_keeps_bucket(s3, bucket, bpath):
    put(s3, bucket, "only", b"x")
    s3.delete_object(Bucket=bucket, Key="only")
    assert bpath.is_dir()
    assert status_of(s3.head_bucket(Bucket=bucket)) == 200
    assert status_of(s3.delete_bucket(Bucket=bucket)) == 204


@upstream_cannot("rclone", "rclone serve s3 answers 500 for a DELETE of a directory's name")
def test_delete_prefix_directory_is_noop(s3, bucket, bpath):
    # Deleting the key "d" where d/ is a directory with content must not remove anything.
    put(s3, bucket, "d/x", b"x")
    r = s3.delete_object(Bucket=bucket, Key="d")
    assert status_of(r) == 204
    assert (bpath / "d" / "x").read_bytes() == b"x"


@local_only("directories on disk are the upstream's, which cleans up after itself")
def test_no_cleanup_flag_keeps_dirs(start_server):
    srv = start_server("--no-cleanup")
    c = srv.client()
    c.create_bucket(Bucket="nocleanup")
    c.put_object(Bucket="nocleanup", Key="deep/er/f.txt", Body=b"x")
    assert status_of(c.delete_object(Bucket="nocleanup", Key="deep/er/f.txt")) == 204
    root = srv.data_dir / "nocleanup"
    assert not (root / "deep" / "er" / "f.txt").exists()
    assert (root / "deep" / "er").is_dir()
    # Empty directories are not objects.
    r = c.list_objects_v2(Bucket="nocleanup")
    assert "Contents" not in r


@local_only("directories on disk are the upstream's")
def test_a_prefix_emptied_by_a_delete_leaves_delimiter_listings_at_once(start_server):
    # With --no-cleanup the emptied directories stay on disk. Whether a directory still holds
    # an object is remembered between listings, so each listing below would show the old
    # prefixes if that memory missed the deletes.
    srv = start_server("--no-cleanup")
    c = srv.client()
    c.create_bucket(Bucket="emptied")
    for k in ["a/1", "b/x/2", "c/3", "c/4"]:
        c.put_object(Bucket="emptied", Key=k, Body=b"x")

    def prefixes():
        r = c.list_objects_v2(Bucket="emptied", Delimiter="/")
        return [p["Prefix"] for p in r.get("CommonPrefixes", [])]

    assert prefixes() == ["a/", "b/", "c/"]
    assert prefixes() == ["a/", "b/", "c/"]
    c.delete_object(Bucket="emptied", Key="a/1")
    assert prefixes() == ["b/", "c/"]
    c.delete_objects(Bucket="emptied", Delete={"Objects": [{"Key": "b/x/2"}, {"Key": "c/3"}]})
    assert prefixes() == ["c/"]
    assert (srv.data_dir / "emptied" / "b" / "x").is_dir()
    c.put_object(Bucket="emptied", Key="a/5", Body=b"x")
    assert prefixes() == ["a/", "c/"]


def test_delete_objects(s3, bucket, bpath):
    ks = ["x/1", "x/2", "y", "z z+%"]
    for k in ks:
        put(s3, bucket, k, b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ks + ["missing"]]})
    assert status_of(r) == 200
    assert sorted(d["Key"] for d in r["Deleted"]) == sorted(ks + ["missing"])
    assert r.get("Errors", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert not (bpath / "x").exists()
    assert bpath.is_dir()


def test_delete_objects_quiet(s3, bucket):
    for k in ["q1", "q2"]:
        put(s3, bucket, k, b"x")
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "q1"}, {"Key": "q2"}], "Quiet": True})
    assert status_of(r) == 200
    assert "Deleted" not in r
    assert r.get("Errors", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_over_1000_keys(s3, bucket):
    put(s3, bucket, "k0", b"x")
    objs = [{"Key": f"k{i}"} for i in range(1001)]
    expect_error(400, "MalformedXML", s3.delete_objects, Bucket=bucket, Delete={"Objects": objs})
    assert s3.head_object(Bucket=bucket, Key="k0")["ContentLength"] == 1


def test_delete_objects_exactly_1000_keys(s3, bucket):
    put(s3, bucket, "k999", b"x")
    objs = [{"Key": f"k{i}"} for i in range(1000)]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
    assert status_of(r) == 200
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="k999")


def test_delete_objects_per_key_errors(s3, bucket, bpath, data_dir):
    put(s3, bucket, "good", b"x")
    put(s3, bucket, "b", b"must survive")
    bad = ["a/../b", "a//b", "./b", "a/./b"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ["good"] + bad]})
    assert status_of(r) == 200
    assert [d["Key"] for d in r.get("Deleted", [])] == ["good"]
    errors = {e["Key"]: e for e in r.get("Errors", [])}
    assert sorted(errors) == sorted(bad)
    for e in errors.values():
        assert e["Code"] and e["Code"] != "InternalError", e
        assert e.get("Message"), e
    assert (bpath / "b").read_bytes() == b"must survive"
    assert not (bpath / "good").exists()


def test_delete_objects_quiet_still_reports_errors(s3, bucket):
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/../b"}], "Quiet": True})
    assert [e["Key"] for e in r.get("Errors", [])] == ["a/../b"]


def test_delete_objects_missing_bucket(s3):
    expect_error(404, "NoSuchBucket", s3.delete_objects, Bucket=unique_bucket_name("nope"),
                 Delete={"Objects": [{"Key": "k"}]})


def _delete_xml(keys, quiet=False):
    body = '<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    if quiet:
        body += "<Quiet>true</Quiet>"
    for k in keys:
        body += f"<Object><Key>{k}</Key></Object>"
    return (body + "</Delete>").encode()


@pytest.mark.parametrize("integrity", ["content-md5", "crc32", "sha256", "none"])
def test_delete_objects_integrity_headers(server, s3, bucket, integrity):
    put(s3, bucket, "d1", b"x")
    body = _delete_xml(["d1"])
    headers = {"Content-Type": "application/xml"}
    if integrity == "content-md5":
        headers["Content-MD5"] = md5b64(body)
    elif integrity == "crc32":
        import zlib

        headers["x-amz-checksum-crc32"] = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
    elif integrity == "sha256":
        headers["x-amz-checksum-sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
    r = raw_request(server, "POST", f"/{bucket}", query=[("delete", None)], headers=headers, body=body)
    assert r.status == 200, r
    root = xml_strip_ns(r.body)
    assert root.tag == "DeleteResult"
    assert [d.findtext("Key") for d in root.findall("Deleted")] == ["d1"]
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="d1")


def test_delete_objects_bad_content_md5(server, s3, bucket):
    put(s3, bucket, "d2", b"x")
    body = _delete_xml(["d2"])
    r = raw_request(server, "POST", f"/{bucket}", query=[("delete", None)],
                    headers={"Content-MD5": md5b64(b"something else")}, body=body)
    assert (r.status, r.code) == (400, "BadDigest"), r
    assert s3.head_object(Bucket=bucket, Key="d2")["ContentLength"] == 1


def test_delete_objects_malformed_xml(server, s3, bucket):
    put(s3, bucket, "d3", b"x")
    r = raw_request(server, "POST", f"/{bucket}", query=[("delete", None)], body=b"<Delete><Object><Key>d3")
    assert (r.status, r.code) == (400, "MalformedXML"), r
    assert s3.head_object(Bucket=bucket, Key="d3")["ContentLength"] == 1


def test_delete_response_headers(s3, bucket):
    put(s3, bucket, "h", b"x")
    r = s3.delete_object(Bucket=bucket, Key="h")
    assert headers_of(r).get("x-amz-request-id")
