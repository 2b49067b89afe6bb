"""Bucket operations with boto3: ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
GetBucketLocation, GetBucketVersioning, plus how the data dir maps to buckets."""

import pytest

from botocore.exceptions import ClientError

from conftest import (
    upstream_cannot,
    err,
    expect_error,
    headers_of,
    put,
    raw_request,
    status_of,
    unique_bucket_name,
    xml_strip_ns,
)


def test_list_buckets_contains_new_bucket(s3, bucket):
    r = s3.list_buckets()
    assert status_of(r) == 200
    names = [b["Name"] for b in r["Buckets"]]
    assert bucket in names
    entry = next(b for b in r["Buckets"] if b["Name"] == bucket)
    assert entry["CreationDate"] is not None
    assert "Owner" in r and r["Owner"].get("ID")


def test_list_buckets_sorted(s3, bucket, bucket2):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == sorted(names)


def test_create_bucket_makes_directory(s3, data_dir):
    name = unique_bucket_name("mkdir")
    r = s3.create_bucket(Bucket=name)
    assert status_of(r) == 200
    assert headers_of(r).get("location") == f"/{name}"
    assert (data_dir / name).is_dir()
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_create_bucket_existing_is_owned_by_you(s3, bucket):
    expect_error(409, "BucketAlreadyOwnedByYou", s3.create_bucket, Bucket=bucket)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.5.4",
        ".leadingdot",
    ],
)
def test_create_bucket_invalid_name(s3, data_dir, name):
    expect_error(400, "InvalidBucketName", s3.create_bucket, Bucket=name)
    assert not (data_dir / name).exists()


def test_create_bucket_s3serve_name_refused(server, data_dir):
    # '.s3serve' names are never exposed nor writable (also invalid bucket names).
    r = raw_request(server, "PUT", "/.s3serve-bucket")
    assert r.status == 400, r
    assert not (data_dir / ".s3serve-bucket").exists()


def test_delete_bucket(s3, data_dir):
    name = unique_bucket_name("del")
    s3.create_bucket(Bucket=name)
    r = s3.delete_bucket(Bucket=name)
    assert status_of(r) == 204
    assert not (data_dir / name).exists()
    expect_error(404, "404", s3.head_bucket, Bucket=name)


def test_delete_bucket_not_empty(s3, bucket, bpath):
    put(s3, bucket, "dir/file.txt", b"x")
    expect_error(409, "BucketNotEmpty", s3.delete_bucket, Bucket=bucket)
    assert (bpath / "dir" / "file.txt").read_bytes() == b"x"


def test_delete_bucket_missing(s3):
    expect_error(404, "NoSuchBucket", s3.delete_bucket, Bucket=unique_bucket_name("missing"))


def test_head_bucket(s3, bucket):
    r = s3.head_bucket(Bucket=bucket)
    assert status_of(r) == 200
    expect_error(404, "404", s3.head_bucket, Bucket=unique_bucket_name("nope"))


def test_get_bucket_location(s3, bucket):
    r = s3.get_bucket_location(Bucket=bucket)
    assert status_of(r) == 200
    assert r.get("LocationConstraint") is None
    expect_error(404, "NoSuchBucket", s3.get_bucket_location, Bucket=unique_bucket_name("nope"))


def test_get_bucket_location_xml(server, bucket):
    r = raw_request(server, "GET", f"/{bucket}", query=[("location", None)])
    assert r.status == 200
    root = xml_strip_ns(r.body)
    assert root.tag == "LocationConstraint"


def test_get_bucket_versioning_never_enabled(s3, bucket):
    r = s3.get_bucket_versioning(Bucket=bucket)
    assert status_of(r) == 200
    assert "Status" not in r
    assert "MFADelete" not in r


def test_list_objects_missing_bucket(s3):
    expect_error(404, "NoSuchBucket", s3.list_objects_v2, Bucket=unique_bucket_name("nope"))
    expect_error(404, "NoSuchBucket", s3.list_objects, Bucket=unique_bucket_name("nope"))


def test_put_object_missing_bucket(s3, data_dir):
    name = unique_bucket_name("nope")
    expect_error(404, "NoSuchBucket", s3.put_object, Bucket=name, Key="k", Body=b"x")
    assert not (data_dir / name).exists()


@upstream_cannot("rclone", "rclone serve s3 treats a file at its root as a bucket")
def test_root_files_are_not_buckets(start_server):
    srv = start_server()
    (srv.data_dir / "rootfile").write_bytes(b"not a bucket")
    (srv.data_dir / "realbucket").mkdir()
    c = srv.client()
    names = [b["Name"] for b in c.list_buckets()["Buckets"]]
    assert names == ["realbucket"]
    expect_error(404, "404", c.head_bucket, Bucket="rootfile")
    expect_error(404, "NoSuchBucket", c.list_objects_v2, Bucket="rootfile")


NAS_FOLDERS = [".snapshots", "@eaDir", "#recycle", "lost+found", ".Trash-1000", ".hidden"]


def test_folders_that_are_not_bucket_names_are_not_listed(start_server):
    """A NAS volume's own folders are not buckets; legacy-style names (upper case, `_`) are."""
    srv = start_server()
    for name in NAS_FOLDERS + ["Photos", "home_share"]:
        (srv.data_dir / name).mkdir()
    s3 = srv.client()
    s3.create_bucket(Bucket="backups")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == ["Photos", "backups", "home_share"]
    assert s3.list_objects_v2(Bucket="Photos")["KeyCount"] == 0


def test_list_buckets_pages(start_server):
    srv = start_server()
    s3 = srv.client()
    made = ["alpha", "beta-1", "beta-2", "beta-3", "gamma"]
    for name in made:
        s3.create_bucket(Bucket=name)
    (srv.data_dir / "@eaDir").mkdir()
    r = s3.list_buckets(MaxBuckets=2)
    assert [b["Name"] for b in r["Buckets"]] == ["alpha", "beta-1"]
    assert all(b["BucketRegion"] == "us-east-1" for b in r["Buckets"])
    token = r["ContinuationToken"]
    r = s3.list_buckets(MaxBuckets=2, ContinuationToken=token)
    assert [b["Name"] for b in r["Buckets"]] == ["beta-2", "beta-3"]
    r = s3.list_buckets(MaxBuckets=2, ContinuationToken=r["ContinuationToken"])
    assert [b["Name"] for b in r["Buckets"]] == ["gamma"] and "ContinuationToken" not in r
    # The SDK's paginator walks them all, one bucket a page.
    pages = list(s3.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 1}))
    assert [b["Name"] for p in pages for b in p["Buckets"]] == made
    r = s3.list_buckets(Prefix="beta", MaxBuckets=2)
    assert [b["Name"] for b in r["Buckets"]] == ["beta-1", "beta-2"] and r["Prefix"] == "beta"
    r = s3.list_buckets(Prefix="beta", ContinuationToken=r["ContinuationToken"])
    assert [b["Name"] for b in r["Buckets"]] == ["beta-3"] and "ContinuationToken" not in r
    assert [b["Name"] for b in s3.list_buckets(BucketRegion="us-east-1")["Buckets"]] == made
    assert s3.list_buckets(BucketRegion="eu-west-1")["Buckets"] == []
    assert s3.list_buckets(Prefix="zzz")["Buckets"] == []
    for bad in ("0", "10001", "x"):
        r = raw_request(srv, "GET", "/", query={"max-buckets": bad})
        assert (r.status, r.code) == (400, "InvalidArgument"), r
    r = raw_request(srv, "GET", "/", query={"continuation-token": "!!"})
    assert (r.status, r.code) == (400, "InvalidArgument"), r


def test_s3serve_names_never_listed(start_server):
    srv = start_server()
    c = srv.client()
    c.create_bucket(Bucket="visible")
    c.put_object(Bucket="visible", Key="a.txt", Body=b"a")
    (srv.data_dir / ".s3serve-extra").mkdir(exist_ok=True)
    (srv.data_dir / ".s3serve-extra" / "f").write_bytes(b"x")
    (srv.data_dir / "visible" / ".s3serve-hidden").write_bytes(b"hidden")
    (srv.data_dir / "visible" / ".s3servedir").mkdir()
    (srv.data_dir / "visible" / ".s3servedir" / "inner").write_bytes(b"hidden")
    names = [b["Name"] for b in c.list_buckets()["Buckets"]]
    assert not [n for n in names if n.startswith(".s3serve")]
    assert "visible" in names
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="visible").get("Contents", [])]
    assert keys == ["a.txt"]
    r = c.list_objects_v2(Bucket="visible", Delimiter="/")
    assert [o["Key"] for o in r.get("Contents", [])] == ["a.txt"]
    assert r.get("CommonPrefixes", []) == []
    keys_v1 = [o["Key"] for o in c.list_objects(Bucket="visible").get("Contents", [])]
    assert keys_v1 == ["a.txt"]
    # Not readable nor writable through S3 either.
    with pytest.raises(ClientError) as ei:
        c.get_object(Bucket="visible", Key=".s3serve-hidden")
    assert 400 <= err(ei)[0] < 500
    r = raw_request(srv, "PUT", "/visible/.s3serve-new", body=b"x")
    assert 400 <= r.status < 500, r
    assert not (srv.data_dir / "visible" / ".s3serve-new").exists()
    r = raw_request(srv, "DELETE", "/visible/.s3serve-hidden")
    assert (srv.data_dir / "visible" / ".s3serve-hidden").read_bytes() == b"hidden"


@upstream_cannot("rclone", "rclone serve s3 caches directory listings (--dir-cache-time), so changes on its disk show late")
def test_bucket_created_on_disk_visible_at_once(server, s3, data_dir):
    name = unique_bucket_name("oob")
    (data_dir / name).mkdir()
    (data_dir / name / "f.txt").write_bytes(b"hello")
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert status_of(s3.head_bucket(Bucket=name)) == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["f.txt"]


@upstream_cannot("rclone", "rclone serve s3 does not create a missing root")
def test_server_creates_missing_root(start_server, tmp_path):
    root = tmp_path / "does" / "not" / "exist"
    srv = start_server(data_dir=root)
    assert root.is_dir()
    c = srv.client()
    c.create_bucket(Bucket="made")
    assert (root / "made").is_dir()
