"""Folder markers: a zero-byte object whose key ends in `/` (the AWS console's "Create folder",
Cyberduck, Hadoop S3A, s3fs, rclone with directory markers). s3serve keeps one as the folder
itself; S3 answers for it as for any empty object."""

import os
import subprocess

import pytest

from conftest import (
    upstream_cannot,
    local_only,
    AWS_BIN,
    expect_error,
    get_bytes,
    headers_of,
    list_all_keys_v2,
    put,
    raw_request,
    unique_bucket_name,
    visible_entries,
)

EMPTY_MD5 = '"d41d8cd98f00b204e9800998ecf8427e"'


def prefixes(r):
    return [p["Prefix"] for p in r.get("CommonPrefixes", [])]


def keys(r):
    return [c["Key"] for c in r.get("Contents", [])]


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_a_folder_marker_is_an_empty_object_with_its_metadata(s3, bucket, bpath):
    r = s3.put_object(Bucket=bucket, Key="photos/2026/", Body=b"", ContentType="application/x-directory",
                      Metadata={"owner": "ann"})
    assert r["ETag"] == EMPTY_MD5
    # On disk it is the folder, and nothing in it that ls shows.
    assert (bpath / "photos" / "2026").is_dir()
    assert visible_entries(bpath) == ["photos/", "photos/2026/"]
    for call in (s3.head_object, s3.get_object):
        got = call(Bucket=bucket, Key="photos/2026/")
        assert got["ContentLength"] == 0 and got["ETag"] == EMPTY_MD5
        assert got["ContentType"] == "application/x-directory" and got["Metadata"] == {"owner": "ann"}
    assert get_bytes(s3, bucket, "photos/2026/") == b""


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_folder_markers_in_listings(s3, bucket):
    put(s3, bucket, "photos/2026/")
    put(s3, bucket, "photos/2025/cat.jpg", b"meow")
    put(s3, bucket, "photos/2026/dog.jpg", b"woof")
    put(s3, bucket, "empty/deeper/")
    # Without a delimiter, the marker is a key, in its place in S3 order.
    assert list_all_keys_v2(s3, bucket) == ["empty/deeper/", "photos/2025/cat.jpg", "photos/2026/",
                                            "photos/2026/dog.jpg"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="photos/2026/")
    assert keys(r) == ["photos/2026/", "photos/2026/dog.jpg"]
    marker = next(c for c in r["Contents"] if c["Key"] == "photos/2026/")
    assert marker["Size"] == 0 and marker["ETag"] == EMPTY_MD5
    # With "/", a marker's folder is a common prefix, even when nothing else is in it.
    assert prefixes(s3.list_objects_v2(Bucket=bucket, Delimiter="/")) == ["empty/", "photos/"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert prefixes(r) == ["photos/2025/", "photos/2026/"] and keys(r) == []
    r = s3.list_objects_v2(Bucket=bucket, Prefix="empty/", Delimiter="/")
    assert prefixes(r) == ["empty/deeper/"]
    # Inside the folder, the marker is a key of its own.
    r = s3.list_objects_v2(Bucket=bucket, Prefix="photos/2026/", Delimiter="/")
    assert keys(r) == ["photos/2026/", "photos/2026/dog.jpg"] and prefixes(r) == []
    # Pages and markers step over it like any key (v1 and v2).
    r = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", MaxKeys=2)
    assert keys(r) == ["photos/2025/cat.jpg", "photos/2026/"] and r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", ContinuationToken=r["NextContinuationToken"])
    assert keys(r) == ["photos/2026/dog.jpg"]
    r = s3.list_objects(Bucket=bucket, Marker="photos/2026/")
    assert keys(r) == ["photos/2026/dog.jpg"]
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="photos/2025/cat.jpg")
    assert keys(r) == ["photos/2026/", "photos/2026/dog.jpg"]


def test_a_folder_without_a_marker_is_not_an_object(s3, bucket):
    put(s3, bucket, "docs/readme.txt", b"hi")
    for k in ("docs/", "docs"):
        expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=k)
    expect_error(404, None, s3.head_object, Bucket=bucket, Key="docs/")


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_delete_removes_the_marker_and_the_empty_folder(s3, bucket, bpath):
    put(s3, bucket, "a/b/")
    assert prefixes(s3.list_objects_v2(Bucket=bucket, Delimiter="/")) == ["a/"]
    s3.delete_object(Bucket=bucket, Key="a/b/")
    assert not (bpath / "a").exists()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    # A folder that still holds objects stays, without its marker.
    put(s3, bucket, "c/")
    put(s3, bucket, "c/keep.txt", b"k")
    s3.delete_object(Bucket=bucket, Key="c/")
    assert (bpath / "c" / "keep.txt").read_bytes() == b"k"
    expect_error(404, None, s3.head_object, Bucket=bucket, Key="c/")
    assert list_all_keys_v2(s3, bucket) == ["c/keep.txt"]
    # Deleting the last object in a marker's folder keeps the folder: the marker is an object.
    put(s3, bucket, "d/")
    put(s3, bucket, "d/e/f.txt", b"f")
    s3.delete_object(Bucket=bucket, Key="d/e/f.txt")
    assert (bpath / "d").is_dir() and not (bpath / "d" / "e").exists()
    assert "d/" in list_all_keys_v2(s3, bucket)
    # DeleteObjects takes markers too.
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/"}, {"Key": "c/keep.txt"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["c/keep.txt", "d/"]
    assert visible_entries(bpath) == []


@local_only("directories on disk are the upstream's, which cleans up after itself")
def test_no_cleanup_keeps_the_folder_but_not_the_marker(start_server):
    srv = start_server("--no-cleanup")
    s3 = srv.client()
    b = unique_bucket_name("markers-nc")
    s3.create_bucket(Bucket=b)
    put(s3, b, "x/y/")
    # Asked before and after, so that a remembered answer has to be given up.
    assert prefixes(s3.list_objects_v2(Bucket=b, Delimiter="/")) == ["x/"]
    assert prefixes(s3.list_objects_v2(Bucket=b, Prefix="x/", Delimiter="/")) == ["x/y/"]
    s3.delete_object(Bucket=b, Key="x/y/")
    assert (srv.data_dir / b / "x" / "y").is_dir()
    expect_error(404, None, s3.head_object, Bucket=b, Key="x/y/")
    assert prefixes(s3.list_objects_v2(Bucket=b, Delimiter="/")) == []
    assert prefixes(s3.list_objects_v2(Bucket=b, Prefix="x/", Delimiter="/")) == []
    assert s3.list_objects_v2(Bucket=b)["KeyCount"] == 0


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_a_marker_with_a_body_is_refused(server, s3, bucket, bpath):
    expect_error(400, "InvalidArgument", s3.put_object, Bucket=bucket, Key="full/", Body=b"not empty")
    # A body of undeclared length (chunked) is refused as well, and nothing is stored.
    r = raw_request(server, "PUT", f"/{bucket}/chunked/", headers={"transfer-encoding": "chunked"},
                    body=b"5\r\nhello\r\n0\r\n\r\n", payload_hash="UNSIGNED-PAYLOAD")
    assert (r.status, r.code) == (400, "InvalidArgument"), r
    assert b"folder marker" in r.body
    for k in ("full/", "chunked/"):
        expect_error(404, None, s3.head_object, Bucket=bucket, Key=k)
    # Copying bytes onto a marker key, or a multipart upload to one, is refused too.
    put(s3, bucket, "src.txt", b"bytes")
    expect_error(400, "InvalidArgument", s3.copy_object, Bucket=bucket, Key="copied/",
                 CopySource={"Bucket": bucket, "Key": "src.txt"})
    expect_error(400, "InvalidArgument", s3.create_multipart_upload, Bucket=bucket, Key="mp/")
    # A marker copies to another marker key, metadata and all.
    put(s3, bucket, "from/", Metadata={"k": "v"})
    s3.copy_object(Bucket=bucket, Key="to/", CopySource={"Bucket": bucket, "Key": "from/"})
    assert s3.head_object(Bucket=bucket, Key="to/")["Metadata"] == {"k": "v"}
    assert visible_entries(bpath) == ["from/", "src.txt", "to/"]


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_markers_and_files_of_the_same_name_conflict(s3, bucket):
    put(s3, bucket, "name/")
    expect_error(409, None, s3.put_object, Bucket=bucket, Key="name", Body=b"x")
    put(s3, bucket, "file", b"x")
    expect_error(409, None, s3.put_object, Bucket=bucket, Key="file/", Body=b"")
    assert get_bytes(s3, bucket, "file") == b"x"


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_aws_cli_sees_folders(server, bucket, aws, s3):
    aws("s3api", "put-object", "--bucket", bucket, "--key", "cli-folder/")
    out = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert "PRE cli-folder/" in out
    out = aws("s3api", "head-object", "--bucket", bucket, "--key", "cli-folder/").stdout
    assert '"ContentLength": 0' in out
    aws("s3", "rm", f"s3://{bucket}/cli-folder/")
    assert "cli-folder" not in aws("s3", "ls", f"s3://{bucket}/").stdout
