"""ListObjects (v1) and ListObjectsV2 with boto3 (which always sends encoding-type=url)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (
    expect_error,
    list_all_keys_v2,
    put,
    quoted_md5,
    raw_request,
    status_of,
    xml_strip_ns,
)

TREE = [
    "a.txt",
    "b/1.txt",
    "b/2.txt",
    "b/c/3.txt",
    "b/c/d/4.txt",
    "d-1",
    "d-2/x",
    "e",
    "f/g/h.txt",
]


def put_many(s3, bucket, keys, body=None):
    def one(k):
        put(s3, bucket, k, body if body is not None else k.encode())

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, keys))


@pytest.fixture
def tree(s3, bucket):
    put_many(s3, bucket, TREE)
    return bucket


def keys(r):
    return [c["Key"] for c in r.get("Contents", [])]


def prefixes(r):
    return [p["Prefix"] for p in r.get("CommonPrefixes", [])]


def test_list_v2_all(s3, tree):
    r = s3.list_objects_v2(Bucket=tree)
    assert status_of(r) == 200
    assert keys(r) == sorted(TREE)
    assert r["KeyCount"] == len(TREE)
    assert r["IsTruncated"] is False
    assert "NextContinuationToken" not in r
    assert r["Name"] == tree
    for c in r["Contents"]:
        assert c["ETag"] == quoted_md5(c["Key"].encode())
        assert c["Size"] == len(c["Key"].encode())
        assert c["StorageClass"] == "STANDARD"
        assert "Owner" not in c


def test_list_v1_all(s3, tree):
    r = s3.list_objects(Bucket=tree)
    assert keys(r) == sorted(TREE)
    assert r["IsTruncated"] is False
    for c in r["Contents"]:
        assert c["ETag"] == quoted_md5(c["Key"].encode())


def test_list_empty_bucket(s3, bucket):
    r = s3.list_objects_v2(Bucket=bucket)
    assert "Contents" not in r
    assert r["KeyCount"] == 0
    assert r["IsTruncated"] is False
    r = s3.list_objects(Bucket=bucket)
    assert "Contents" not in r


@pytest.mark.parametrize("v", [1, 2])
def test_list_prefix(s3, tree, v):
    fn = s3.list_objects_v2 if v == 2 else s3.list_objects
    assert keys(fn(Bucket=tree, Prefix="b/")) == ["b/1.txt", "b/2.txt", "b/c/3.txt", "b/c/d/4.txt"]
    assert keys(fn(Bucket=tree, Prefix="b/c")) == ["b/c/3.txt", "b/c/d/4.txt"]
    assert keys(fn(Bucket=tree, Prefix="d")) == ["d-1", "d-2/x"]
    assert keys(fn(Bucket=tree, Prefix="b/1")) == ["b/1.txt"]
    assert keys(fn(Bucket=tree, Prefix="nothing")) == []
    assert keys(fn(Bucket=tree, Prefix="a.txt")) == ["a.txt"]
    assert keys(fn(Bucket=tree, Prefix="a.txtx")) == []


@pytest.mark.parametrize("v", [1, 2])
def test_list_delimiter_slash(s3, tree, v):
    fn = s3.list_objects_v2 if v == 2 else s3.list_objects
    r = fn(Bucket=tree, Delimiter="/")
    assert keys(r) == ["a.txt", "d-1", "e"]
    assert prefixes(r) == ["b/", "d-2/", "f/"]
    assert r["Delimiter"] == "/"
    if v == 2:
        assert r["KeyCount"] == 6
    r = fn(Bucket=tree, Delimiter="/", Prefix="b/")
    assert keys(r) == ["b/1.txt", "b/2.txt"]
    assert prefixes(r) == ["b/c/"]
    assert r["Prefix"] == "b/"
    r = fn(Bucket=tree, Delimiter="/", Prefix="b/c/d/")
    assert keys(r) == ["b/c/d/4.txt"]
    assert prefixes(r) == []
    r = fn(Bucket=tree, Delimiter="/", Prefix="b/c")
    assert keys(r) == []
    assert prefixes(r) == ["b/c/"]
    r = fn(Bucket=tree, Delimiter="/", Prefix="f/g")
    assert prefixes(r) == ["f/g/"]


@pytest.mark.parametrize("v", [1, 2])
def test_list_other_delimiter(s3, bucket, v):
    put_many(s3, bucket, ["x-1", "x-2", "y-a-b", "y-a-c", "z", "d/x-1", "d/x-2", "d/y"])
    fn = s3.list_objects_v2 if v == 2 else s3.list_objects
    r = fn(Bucket=bucket, Delimiter="-")
    assert prefixes(r) == ["d/x-", "x-", "y-"]
    assert keys(r) == ["d/y", "z"]
    r = fn(Bucket=bucket, Delimiter="-", Prefix="y-")
    assert prefixes(r) == ["y-a-"]
    assert keys(r) == []
    r = fn(Bucket=bucket, Delimiter="-", Prefix="d/")
    assert prefixes(r) == ["d/x-"]
    assert keys(r) == ["d/y"]
    # A multi-character delimiter.
    r = fn(Bucket=bucket, Delimiter="a-")
    assert prefixes(r) == ["y-a-"]
    assert keys(r) == ["d/x-1", "d/x-2", "d/y", "x-1", "x-2", "z"]


def test_paging_v2_continuation(s3, bucket):
    all_keys = sorted([f"k{i:03d}" for i in range(23)] + [f"dir/{i}" for i in range(4)])
    put_many(s3, bucket, all_keys)
    got, token, pages = [], None, 0
    while True:
        kw = {"MaxKeys": 5}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(Bucket=bucket, **kw)
        pages += 1
        assert r["KeyCount"] == len(keys(r))
        assert len(keys(r)) <= 5
        assert r["MaxKeys"] == 5
        if token:
            assert r["ContinuationToken"] == token
        got += keys(r)
        if not r["IsTruncated"]:
            assert "NextContinuationToken" not in r
            break
        assert len(keys(r)) == 5
        token = r["NextContinuationToken"]
        assert pages < 20
    assert got == all_keys
    assert pages == 6


def test_paging_v2_with_delimiter(s3, bucket):
    ks = [f"p{i}/x" for i in range(7)] + [f"q{i}" for i in range(5)]
    put_many(s3, bucket, ks)
    seen_k, seen_p, token = [], [], None
    while True:
        kw = {"MaxKeys": 3, "Delimiter": "/"}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(Bucket=bucket, **kw)
        assert r["KeyCount"] == len(keys(r)) + len(prefixes(r)) <= 3
        seen_k += keys(r)
        seen_p += prefixes(r)
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen_p == [f"p{i}/" for i in range(7)]
    assert seen_k == [f"q{i}" for i in range(5)]


def test_paginator_v2(s3, bucket):
    ks = [f"pg/{i:02d}" for i in range(17)]
    put_many(s3, bucket, ks)
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
        got += keys(page)
    assert got == ks


def test_start_after(s3, tree):
    r = s3.list_objects_v2(Bucket=tree, StartAfter="b/c/3.txt")
    assert keys(r) == ["b/c/d/4.txt", "d-1", "d-2/x", "e", "f/g/h.txt"]
    assert r["StartAfter"] == "b/c/3.txt"
    r = s3.list_objects_v2(Bucket=tree, StartAfter="b/a")  # not an existing key
    assert keys(r)[0] == "b/c/3.txt"
    r = s3.list_objects_v2(Bucket=tree, StartAfter="zzz")
    assert keys(r) == []


def test_paging_v1_marker(s3, bucket):
    all_keys = sorted(f"m{i:03d}" for i in range(19))
    put_many(s3, bucket, all_keys)
    got, marker = [], ""
    for _ in range(20):
        r = s3.list_objects(Bucket=bucket, MaxKeys=4, Marker=marker)
        assert r["Marker"] == marker
        assert r["MaxKeys"] == 4
        got += keys(r)
        if not r["IsTruncated"]:
            break
        marker = keys(r)[-1]
    assert got == all_keys


def test_v1_next_marker_with_delimiter(s3, bucket):
    put_many(s3, bucket, ["a/1", "b/1", "c", "d/1", "e"])
    r = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert r["IsTruncated"] is True
    assert prefixes(r) == ["a/", "b/"]
    assert r["NextMarker"] == "b/"
    r = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2, Marker=r["NextMarker"])
    assert keys(r) == ["c"] and prefixes(r) == ["d/"]
    r = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2, Marker=r["NextMarker"])
    assert keys(r) == ["e"] and r["IsTruncated"] is False


def test_paginator_v1(s3, bucket):
    ks = [f"pg1/{i:02d}" for i in range(11)]
    put_many(s3, bucket, ks)
    got = []
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}):
        got += keys(page)
    assert got == ks


@pytest.mark.parametrize("v", [1, 2])
def test_max_keys_zero(s3, tree, v):
    fn = s3.list_objects_v2 if v == 2 else s3.list_objects
    r = fn(Bucket=tree, MaxKeys=0)
    assert status_of(r) == 200
    assert keys(r) == []
    assert prefixes(r) == []
    assert r.get("MaxKeys") == 0
    if v == 2:
        assert r["KeyCount"] == 0


@pytest.mark.parametrize("bad", ["-1", "abc"])
def test_max_keys_invalid(server, bucket, bad):
    r = raw_request(server, "GET", f"/{bucket}", query=[("list-type", "2"), ("max-keys", bad)])
    assert (r.status, r.code) == (400, "InvalidArgument"), r


def test_max_keys_capped_at_1000(s3, bucket):
    ks = [f"big/{i:04d}" for i in range(1003)]
    put_many(s3, bucket, ks, body=b"")
    r = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert len(keys(r)) == 1000
    assert r["KeyCount"] == 1000
    assert r["IsTruncated"] is True
    r2 = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000, ContinuationToken=r["NextContinuationToken"])
    assert keys(r2) == ks[1000:]
    assert r2["IsTruncated"] is False
    r1 = s3.list_objects(Bucket=bucket, MaxKeys=2000)
    assert len(keys(r1)) == 1000 and r1["IsTruncated"] is True
    r = s3.list_objects_v2(Bucket=bucket)  # default is 1000 too
    assert len(keys(r)) == 1000 and r["IsTruncated"] is True
    assert list_all_keys_v2(s3, bucket) == ks


def test_fetch_owner(s3, tree):
    r = s3.list_objects_v2(Bucket=tree, FetchOwner=True)
    assert r["Contents"]
    for c in r["Contents"]:
        assert c["Owner"]["ID"]
    r = s3.list_objects_v2(Bucket=tree)
    for c in r["Contents"]:
        assert "Owner" not in c


SPECIAL = [
    "a b.txt",
    "a+b.txt",
    "a%20b.txt",
    "a%2Bb",
    "100%",
    "x~y",
    "q?x=1&y=2",
    "amp&lt;",
    "<tag>\"quote'",
    "ünï/cødé.txt",
    "中文/文件",
    "emoji/\U0001F600",
    "dir with space/file +plus",
]


def test_special_keys_listed_exactly(s3, bucket):
    put_many(s3, bucket, SPECIAL)
    expected = sorted(SPECIAL, key=lambda k: k.encode())
    assert keys(s3.list_objects_v2(Bucket=bucket)) == expected
    assert keys(s3.list_objects(Bucket=bucket)) == expected
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert prefixes(r) == sorted(["ünï/", "中文/", "emoji/", "dir with space/"], key=lambda k: k.encode())
    r = s3.list_objects_v2(Bucket=bucket, Prefix="dir with space/", Delimiter="/")
    assert keys(r) == ["dir with space/file +plus"]
    assert r["Prefix"] == "dir with space/"
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a+")
    assert keys(r) == ["a+b.txt"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a%")
    assert keys(r) == ["a%20b.txt", "a%2Bb"]
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="a+b.txt")
    assert keys(r)[0] == expected[expected.index("a+b.txt") + 1]
    for k in SPECIAL:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()


def test_special_keys_paging(s3, bucket):
    put_many(s3, bucket, SPECIAL)
    expected = sorted(SPECIAL, key=lambda k: k.encode())
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}):
        got += keys(page)
    assert got == expected
    got = []
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}):
        got += keys(page)
    assert got == expected


def test_encoding_type_url_on_wire(server, s3, bucket):
    put(s3, bucket, "a+b c%d/e", b"x")
    r = raw_request(server, "GET", f"/{bucket}", query=[("list-type", "2"), ("encoding-type", "url")])
    assert r.status == 200
    root = xml_strip_ns(r.body)
    assert root.findtext("EncodingType") == "url"
    k = root.find("Contents").findtext("Key")
    assert k in ("a%2Bb+c%25d/e", "a%2Bb%20c%25d/e"), k
    from urllib.parse import unquote_plus

    assert unquote_plus(k) == "a+b c%d/e"
    # Without encoding-type the key is plain XML text.
    r = raw_request(server, "GET", f"/{bucket}", query=[("list-type", "2")])
    root = xml_strip_ns(r.body)
    assert root.find("Contents").findtext("Key") == "a+b c%d/e"
    assert root.find("EncodingType") is None


def test_utf8_byte_order(s3, bucket):
    ks = ["a", "B", "Z", "_", "a-b", "a.d/b", "a+b", "ab", "a0", "é", "ÿ", "ā", "中", "\U0001F600", "~", "zz"]
    put_many(s3, bucket, ks)
    expected = sorted(ks, key=lambda k: k.encode("utf-8"))
    assert keys(s3.list_objects_v2(Bucket=bucket)) == expected
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}):
        got += keys(page)
    assert got == expected


def test_order_dir_vs_file_names(s3, bucket):
    # 'a/…' sorts after 'a-b' and 'a.b' (0x2F > 0x2D, 0x2E) and before 'a0' and 'ab'.
    ks = ["a/x", "a-b", "a.b", "a0", "ab", "a/y/z"]
    put_many(s3, bucket, ks)
    expected = sorted(ks, key=lambda k: k.encode())
    assert keys(s3.list_objects_v2(Bucket=bucket)) == expected
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert keys(r) == ["a-b", "a.b", "a0", "ab"]
    assert prefixes(r) == ["a/"]
    r = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=3)
    assert keys(r) == ["a-b", "a.b"] and prefixes(r) == ["a/"]


def test_invalid_continuation_token(server, bucket):
    r = raw_request(server, "GET", f"/{bucket}",
                    query=[("list-type", "2"), ("continuation-token", "!!!not-a-token!!!")])
    assert r.status == 400, r
    assert r.code in ("InvalidArgument", "InvalidToken"), r


def test_list_response_xml_shape(server, s3, bucket):
    put(s3, bucket, "k", b"x")
    r = raw_request(server, "GET", f"/{bucket}", query=[("list-type", "2")])
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("application/xml")
    assert b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in r.body
    root = xml_strip_ns(r.body)
    assert root.tag == "ListBucketResult"
    c = root.find("Contents")
    assert c.findtext("ETag") == quoted_md5(b"x")
    lm = c.findtext("LastModified")
    assert lm.endswith("Z") and "T" in lm


def test_list_missing_bucket(s3):
    expect_error(404, "NoSuchBucket", s3.list_objects_v2, Bucket="no-such-bucket-for-list")
