"""Requests that must fail cleanly: unknown subresources (501, never a data operation),
unsafe keys, keys that collide with directories, --read-only."""

import json
import os

import pytest

from conftest import (
    upstream_cannot,
    local_only,
    expect_error,
    files_under,
    get_bytes,
    md5hex,
    put,
    quoted_md5,
    raw_request,
    status_of,
    unique_bucket_name,
)

BODY = b"precious data"

TAGGING = {"TagSet": [{"Key": "k", "Value": "v"}]}
CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
LIFECYCLE = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]}
POLICY = json.dumps({"Version": "2012-10-17", "Statement": []})

OBJECT_CALLS = {
    "get_object_acl": lambda s3, b, k: s3.get_object_acl(Bucket=b, Key=k),
    "put_object_acl": lambda s3, b, k: s3.put_object_acl(Bucket=b, Key=k, ACL="private"),
    "get_object_tagging": lambda s3, b, k: s3.get_object_tagging(Bucket=b, Key=k),
    "put_object_tagging": lambda s3, b, k: s3.put_object_tagging(Bucket=b, Key=k, Tagging=TAGGING),
    "delete_object_tagging": lambda s3, b, k: s3.delete_object_tagging(Bucket=b, Key=k),
    "get_object_retention": lambda s3, b, k: s3.get_object_retention(Bucket=b, Key=k),
    "get_object_legal_hold": lambda s3, b, k: s3.get_object_legal_hold(Bucket=b, Key=k),
    "put_object_legal_hold": lambda s3, b, k: s3.put_object_legal_hold(Bucket=b, Key=k, LegalHold={"Status": "ON"}),
}

BUCKET_CALLS = {
    "get_bucket_acl": lambda s3, b: s3.get_bucket_acl(Bucket=b),
    "put_bucket_acl": lambda s3, b: s3.put_bucket_acl(Bucket=b, ACL="private"),
    "get_bucket_policy": lambda s3, b: s3.get_bucket_policy(Bucket=b),
    "put_bucket_policy": lambda s3, b: s3.put_bucket_policy(Bucket=b, Policy=POLICY),
    "delete_bucket_policy": lambda s3, b: s3.delete_bucket_policy(Bucket=b),
    "get_bucket_cors": lambda s3, b: s3.get_bucket_cors(Bucket=b),
    "put_bucket_cors": lambda s3, b: s3.put_bucket_cors(Bucket=b, CORSConfiguration=CORS),
    "delete_bucket_cors": lambda s3, b: s3.delete_bucket_cors(Bucket=b),
    "get_bucket_lifecycle_configuration": lambda s3, b: s3.get_bucket_lifecycle_configuration(Bucket=b),
    "put_bucket_lifecycle_configuration":
        lambda s3, b: s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=LIFECYCLE),
    "delete_bucket_lifecycle": lambda s3, b: s3.delete_bucket_lifecycle(Bucket=b),
    "get_bucket_tagging": lambda s3, b: s3.get_bucket_tagging(Bucket=b),
    "put_bucket_tagging": lambda s3, b: s3.put_bucket_tagging(Bucket=b, Tagging=TAGGING),
    "delete_bucket_tagging": lambda s3, b: s3.delete_bucket_tagging(Bucket=b),
    "list_object_versions": lambda s3, b: s3.list_object_versions(Bucket=b),
    "get_bucket_website": lambda s3, b: s3.get_bucket_website(Bucket=b),
    "delete_bucket_website": lambda s3, b: s3.delete_bucket_website(Bucket=b),
    "get_bucket_encryption": lambda s3, b: s3.get_bucket_encryption(Bucket=b),
    "get_object_lock_configuration": lambda s3, b: s3.get_object_lock_configuration(Bucket=b),
}


@pytest.mark.parametrize("name", sorted(OBJECT_CALLS))
def test_object_subresource_not_implemented(s3, bucket, bpath, name):
    put(s3, bucket, "obj", BODY, Metadata={"m": "1"})
    expect_error(501, "NotImplemented", OBJECT_CALLS[name], s3, bucket, "obj")
    assert (bpath / "obj").read_bytes() == BODY
    h = s3.head_object(Bucket=bucket, Key="obj")
    assert h["ETag"] == quoted_md5(BODY)
    assert h["Metadata"] == {"m": "1"}


@pytest.mark.parametrize("name", sorted(BUCKET_CALLS))
def test_bucket_subresource_not_implemented(s3, bucket, bpath, name):
    expect_error(501, "NotImplemented", BUCKET_CALLS[name], s3, bucket)
    # The bucket was empty: a DELETE that fell through would have removed it.
    assert bpath.is_dir()
    assert status_of(s3.head_bucket(Bucket=bucket)) == 200


@pytest.mark.parametrize("name", ["put_bucket_acl", "put_bucket_cors", "put_bucket_tagging", "put_bucket_policy"])
def test_bucket_subresource_put_does_not_create_bucket(s3, data_dir, name):
    b = unique_bucket_name("nocreate")
    with pytest.raises(Exception):
        BUCKET_CALLS[name](s3, b)
    assert not (data_dir / b).exists()


@pytest.mark.parametrize(
    "method, sub",
    [
        ("GET", "acl"), ("PUT", "acl"), ("GET", "tagging"), ("PUT", "tagging"), ("DELETE", "tagging"),
        ("PUT", "attributes"), ("PUT", "retention"), ("PUT", "legal-hold"), ("GET", "torrent"),
        ("POST", "restore"), ("POST", "select"), ("DELETE", "acl"),
    ],
)
def test_raw_object_subresources(server, s3, bucket, bpath, method, sub):
    put(s3, bucket, "obj", BODY)
    body = b"<Tagging><TagSet/></Tagging>" if method in ("PUT", "POST") else b""
    q = [(sub, None)]
    if sub == "select":
        q.append(("select-type", "2"))
    r = raw_request(server, method, f"/{bucket}/obj", query=q, body=body)
    if (method, sub) in (("DELETE", "acl"), ("PUT", "attributes")):
        assert (r.status, r.code) in ((501, "NotImplemented"), (405, "MethodNotAllowed")), r
    else:
        assert (r.status, r.code) == (501, "NotImplemented"), r
    assert BODY not in r.body
    assert (bpath / "obj").read_bytes() == BODY


@pytest.mark.parametrize(
    "method, sub",
    [
        ("GET", "acl"), ("GET", "policy"), ("GET", "cors"), ("GET", "lifecycle"), ("GET", "versions"),
        ("GET", "notification"), ("GET", "replication"), ("GET", "logging"), ("GET", "requestPayment"),
        ("DELETE", "cors"), ("DELETE", "policy"), ("DELETE", "lifecycle"), ("DELETE", "tagging"),
        ("PUT", "policy"), ("PUT", "logging"), ("PUT", "notification"),
    ],
)
def test_raw_bucket_subresources(server, s3, bucket, bpath, method, sub):
    put(s3, bucket, "obj", BODY)
    r = raw_request(server, method, f"/{bucket}", query=[(sub, None)], body=b"{}" if method == "PUT" else b"")
    assert (r.status, r.code) == (501, "NotImplemented"), r
    assert b"<ListBucketResult" not in r.body
    assert (bpath / "obj").read_bytes() == BODY


def test_empty_bucket_delete_cors_keeps_bucket(server, s3, bucket, bpath):
    r = raw_request(server, "DELETE", f"/{bucket}", query=[("cors", None)])
    assert (r.status, r.code) == (501, "NotImplemented"), r
    assert bpath.is_dir()


# ---------------------------------------------------------------------------------- unsafe keys

UNSAFE_PATHS = [
    "a/../b",
    "a/%2E%2E/b",
    "..%2F..%2Fescape",
    "../escape",
    "a//b",
    "./x",
    "a/./b",
    "x/.",
    "..",
    "%2E%2E",
    "a/%00b",
]


# These run on an anonymous server, so that the answer is about the key and not about how a
# signature over an odd path is canonicalised.


@pytest.mark.parametrize("rel", UNSAFE_PATHS)
def test_unsafe_key_put_rejected(start_server, rel):
    srv = start_server(auth=None)
    (srv.data_dir / "bkt").mkdir()
    before_outside = sorted(os.listdir(srv.data_dir.parent))
    r = raw_request(srv, "PUT", f"/bkt/{rel}", body=b"evil", sign=False)
    assert r.status == 400, r
    assert r.code, f"the error body must be well-formed XML with a Code: {r.body!r}"
    assert files_under(srv.data_dir / "bkt") == []
    assert [p for p in files_under(srv.data_dir) if not p.startswith(".s3serve")] == []
    after_outside = sorted(os.listdir(srv.data_dir.parent))
    assert after_outside == before_outside, "something was written next to the data dir"


@pytest.mark.parametrize("rel", ["a/../b", "a//b", "./b", "a/%2E%2E/b", "a/./b"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_unsafe_key_read_delete_rejected(start_server, rel, method):
    srv = start_server(auth=None)
    bpath = srv.data_dir / "bkt"
    (bpath / "a").mkdir(parents=True)
    (bpath / "b").write_bytes(BODY)
    (bpath / "a" / "b").write_bytes(BODY)
    r = raw_request(srv, method, f"/bkt/{rel}", sign=False)
    assert r.status == 400, r
    assert BODY not in r.body
    assert (bpath / "b").read_bytes() == BODY
    assert (bpath / "a" / "b").read_bytes() == BODY


def test_unsafe_key_signed(server, bucket, bpath):
    # Signed requests whose canonical path is unambiguous (S3 does not normalise paths).
    for rel in ["a/../b", "a//b", "./x", "a/./b"]:
        r = raw_request(server, "PUT", f"/{bucket}/{rel}", body=b"x")
        assert r.status == 400, (rel, r)
    assert files_under(bpath) == []


def test_unsafe_key_boto3(s3, bucket, bpath):
    for key in ["a/../b", "a//b", "./x"]:
        expect_error(400, None, s3.put_object, Bucket=bucket, Key=key, Body=b"x")
    assert files_under(bpath) == []


def test_copy_to_and_from_unsafe_keys(server, s3, bucket, bpath):
    put(s3, bucket, "src", BODY)
    r = raw_request(server, "PUT", f"/{bucket}/a/../dst", headers={"x-amz-copy-source": f"/{bucket}/src"})
    assert r.status == 400, r
    r = raw_request(server, "PUT", f"/{bucket}/dst", headers={"x-amz-copy-source": f"/{bucket}/a/../src"})
    assert r.status == 400, r
    assert files_under(bpath) == ["src"]


def test_key_too_long(s3, bucket, bpath):
    expect_error(400, "KeyTooLongError", s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x")
    expect_error(400, "KeyTooLongError", s3.put_object, Bucket=bucket, Key="d/" * 512 + "x", Body=b"x")
    assert files_under(bpath) == []


def test_key_1024_bytes_ok_or_clear_error(s3, bucket):
    # 1024 bytes is a legal S3 key; a filesystem with 255-byte names may refuse it, but only with a 4xx.
    key = "/".join(["d" * 200] * 5) + "/" + "e" * 19
    assert len(key) == 1024
    try:
        put(s3, bucket, key, b"x")
    except Exception as e:  # noqa: BLE001
        from conftest import err

        assert 400 <= err(e)[0] < 500
    else:
        assert get_bytes(s3, bucket, key) == b"x"


def test_long_path_component_is_4xx(s3, bucket, bpath):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as ei:
        put(s3, bucket, "c" * 300, b"x")
    from conftest import err

    assert 400 <= err(ei)[0] < 500
    assert files_under(bpath) == []


# --------------------------------------------------------------------------------- collisions


@upstream_cannot("rclone", "rclone serve s3 answers 500 where a key collides with a directory")
def test_put_key_where_directory_exists(s3, bucket, bpath):
    put(s3, bucket, "d/x", BODY)
    from botocore.exceptions import ClientError

    from conftest import err

    with pytest.raises(ClientError) as ei:
        put(s3, bucket, "d", b"file over dir")
    st, code = err(ei)
    assert 400 <= st < 500, (st, code)
    assert (bpath / "d" / "x").read_bytes() == BODY
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/x"]


@upstream_cannot("rclone", "rclone serve s3 answers 500 where a key collides with a directory")
def test_put_key_below_a_file(s3, bucket, bpath):
    put(s3, bucket, "f", BODY)
    from botocore.exceptions import ClientError

    from conftest import err

    with pytest.raises(ClientError) as ei:
        put(s3, bucket, "f/x", b"below a file")
    st, code = err(ei)
    assert 400 <= st < 500, (st, code)
    assert (bpath / "f").read_bytes() == BODY
    with pytest.raises(ClientError) as ei:
        put(s3, bucket, "f/x/y/z", b"deeper")
    assert 400 <= err(ei)[0] < 500


@upstream_cannot("rclone", "rclone serve s3 answers 500 where a key collides with a directory")
def test_copy_onto_directory_collision(s3, bucket, bpath):
    put(s3, bucket, "d/x", BODY)
    put(s3, bucket, "src", b"s")
    from botocore.exceptions import ClientError

    from conftest import err

    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "src"})
    assert 400 <= err(ei)[0] < 500
    assert (bpath / "d" / "x").read_bytes() == BODY


@upstream_cannot("rclone", "rclone serve s3 answers 500 for keys ending in '/' (folder markers)")
def test_trailing_slash_key_is_not_500(server, s3, bucket, bpath):
    put(s3, bucket, "dir/x", BODY)
    r = raw_request(server, "PUT", f"/{bucket}/dir/", body=b"")
    assert r.status < 500, r
    assert (bpath / "dir" / "x").read_bytes() == BODY


# ---------------------------------------------------------------------------------- read-only


@pytest.fixture
def ro(start_server, tmp_path):
    data = tmp_path / "data"
    (data / "robkt" / "dir").mkdir(parents=True)
    (data / "robkt" / "dir" / "f.txt").write_bytes(BODY)
    srv = start_server("--read-only", data_dir=data)
    return srv


def test_read_only_reads_work(ro):
    c = ro.client()
    assert c.get_object(Bucket="robkt", Key="dir/f.txt")["Body"].read() == BODY
    assert c.head_object(Bucket="robkt", Key="dir/f.txt")["ETag"] == quoted_md5(BODY)
    assert [o["Key"] for o in c.list_objects_v2(Bucket="robkt")["Contents"]] == ["dir/f.txt"]
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["robkt"]


@pytest.mark.parametrize(
    "op",
    ["put", "put_new_dir", "delete", "delete_missing", "create_bucket", "delete_bucket", "copy",
     "copy_self_replace"],
)
def test_read_only_writes_denied(ro, op):
    c = ro.client()
    calls = {
        "put": lambda: c.put_object(Bucket="robkt", Key="dir/f.txt", Body=b"overwrite"),
        "put_new_dir": lambda: c.put_object(Bucket="robkt", Key="new/dir/file", Body=b"x"),
        "delete": lambda: c.delete_object(Bucket="robkt", Key="dir/f.txt"),
        "delete_missing": lambda: c.delete_object(Bucket="robkt", Key="nothing"),
        "create_bucket": lambda: c.create_bucket(Bucket="newbucket"),
        "delete_bucket": lambda: c.delete_bucket(Bucket="robkt"),
        "copy": lambda: c.copy_object(Bucket="robkt", Key="copy", CopySource={"Bucket": "robkt", "Key": "dir/f.txt"}),
        "copy_self_replace": lambda: c.copy_object(Bucket="robkt", Key="dir/f.txt", MetadataDirective="REPLACE",
                                                   CopySource={"Bucket": "robkt", "Key": "dir/f.txt"},
                                                   Metadata={"mtime": "1000"}),
    }
    before = sorted(p.relative_to(ro.data_dir).as_posix() for p in ro.data_dir.rglob("*")
                    if not p.name.startswith(".s3serve"))
    st = os.stat(ro.data_dir / "robkt" / "dir" / "f.txt")
    expect_error(403, "AccessDenied", calls[op])
    after = sorted(p.relative_to(ro.data_dir).as_posix() for p in ro.data_dir.rglob("*")
                   if not p.name.startswith(".s3serve"))
    assert after == before
    assert (ro.data_dir / "robkt" / "dir" / "f.txt").read_bytes() == BODY
    assert os.stat(ro.data_dir / "robkt" / "dir" / "f.txt").st_mtime_ns == st.st_mtime_ns


def test_read_only_delete_objects_denied(ro):
    # Either the whole request is refused (403 AccessDenied) or every key reports AccessDenied.
    c = ro.client()
    from botocore.exceptions import ClientError

    from conftest import err

    for quiet in (False, True):
        try:
            r = c.delete_objects(Bucket="robkt", Delete={"Objects": [{"Key": "dir/f.txt"}], "Quiet": quiet})
        except ClientError as e:
            assert err(e) == (403, "AccessDenied")
        else:
            assert "Deleted" not in r
            assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("dir/f.txt", "AccessDenied")]
    assert (ro.data_dir / "robkt" / "dir" / "f.txt").read_bytes() == BODY


# -------------------------------------------------------------------------------- --etag-hash


@local_only("ETags are the upstream's (it hashes what it stores)")
def test_etag_hash_sha256(start_server):
    import hashlib

    srv = start_server("--etag-hash", "SHA256")
    c = srv.client()
    c.create_bucket(Bucket="sha")
    body = b"sha256 etag body"
    want = f'"{hashlib.sha256(body).hexdigest()}"'
    r = c.put_object(Bucket="sha", Key="k", Body=body)
    assert r["ETag"] == want
    assert c.head_object(Bucket="sha", Key="k")["ETag"] == want
    assert c.get_object(Bucket="sha", Key="k")["ETag"] == want
    assert c.list_objects_v2(Bucket="sha")["Contents"][0]["ETag"] == want
    assert c.list_objects(Bucket="sha")["Contents"][0]["ETag"] == want
    # Conditionals compare against the same ETag.
    assert status_of(c.get_object(Bucket="sha", Key="k", IfMatch=want)) == 200
    expect_error(304, None, c.get_object, Bucket="sha", Key="k", IfNoneMatch=want)
    cp = c.copy_object(Bucket="sha", Key="k2", CopySource={"Bucket": "sha", "Key": "k"})
    assert cp["CopyObjectResult"]["ETag"] == want


@local_only("ETags are the upstream's (it hashes what it stores)")
def test_etag_hash_sha256_file_written_on_disk(start_server):
    import hashlib

    srv = start_server("--etag-hash", "SHA256")
    (srv.data_dir / "shadisk").mkdir()
    (srv.data_dir / "shadisk" / "f").write_bytes(b"from disk")
    c = srv.client()
    assert c.head_object(Bucket="shadisk", Key="f")["ETag"] == f'"{hashlib.sha256(b"from disk").hexdigest()}"'


@local_only("ETags are the upstream's (it hashes what it stores)")
def test_etag_hash_blank_means_no_etag(start_server):
    srv = start_server("--etag-hash", "")
    c = srv.client()
    c.create_bucket(Bucket="noetag")
    c.put_object(Bucket="noetag", Key="k", Body=b"x")
    r = raw_request(srv, "HEAD", "/noetag/k")
    assert r.status == 200
    assert r.header("ETag") is None, r.header_list
    r = raw_request(srv, "GET", "/noetag/k")
    assert r.header("ETag") is None
    assert r.body == b"x"
    assert "ETag" not in c.head_object(Bucket="noetag", Key="k")
    assert get_bytes(c, "noetag", "k") == b"x"


def test_etag_hash_default_is_md5(s3, bucket):
    r = put(s3, bucket, "md5", b"abc")
    assert r["ETag"] == f'"{md5hex(b"abc")}"'
