"""Multipart uploads with boto3, the aws cli and raw HTTP (issue 3): managed transfers, the
low-level API and its error paths, UploadPartCopy, partNumber reads, restarts, DeleteBucket and
--read-only. Checks statuses, error codes, ETags, bytes and the files on disk."""

import hashlib
import os
import re

import pytest
from boto3.s3.transfer import TransferConfig

from conftest import (
    upstream_cannot,
    local_only,
    err,
    expect_error,
    files_under,
    get_bytes,
    headers_of,
    put,
    quoted_md5,
    raw_request,
    status_of,
    unique_bucket_name,
    xml_strip_ns,
)

pytestmark = pytest.mark.multipart

MiB = 1024 * 1024
P5 = 5 * MiB


def mp_etag(parts):
    """S3's multipart ETag: MD5 of the concatenated binary part MD5s, then -N (quoted)."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def chunks(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def create(s3, bucket, key, **kw):
    r = s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)
    assert status_of(r) == 200
    assert (r["Bucket"], r["Key"]) == (bucket, key)
    assert r["UploadId"]
    return r["UploadId"]


def upload(s3, bucket, key, uid, n, data):
    r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=data)
    assert status_of(r) == 200
    assert r["ETag"] == quoted_md5(data), f"part {n} ETag"
    return r["ETag"]


def start_upload(s3, bucket, key, parts):
    """Create an upload and upload parts 1..N. Returns (upload id, [ETags])."""
    uid = create(s3, bucket, key)
    return uid, [upload(s3, bucket, key, uid, i + 1, p) for i, p in enumerate(parts)]


def complete(s3, bucket, key, uid, numbered_etags, **kw):
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in numbered_etags]}, **kw)


def part_numbers(s3, bucket, key, uid, **kw):
    return [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, **kw).get("Parts", [])]


def assert_object(s3, bpath, bucket, key, data, etag):
    assert (bpath / key).read_bytes() == data
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == etag
    g = s3.get_object(Bucket=bucket, Key=key)
    assert g["ETag"] == etag
    assert g["Body"].read() == data
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]}
    assert listed[key]["ETag"] == etag
    assert listed[key]["Size"] == len(data)


def upload_files(data_dir):
    root = data_dir / ".s3serve" / "uploads"
    return [p for p in root.rglob("*")] if root.exists() else []


# ------------------------------------------------------------------------- managed transfers


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_boto3_upload_file_download_file(s3, bucket, bpath, tmp_path):
    data = os.urandom(23 * MiB + 4321)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=P5, multipart_chunksize=P5)
    s3.upload_file(str(src), bucket, "big/file.bin", Config=cfg)
    etag = mp_etag(chunks(data, P5))
    assert etag.endswith('-5"')
    assert_object(s3, bpath, bucket, "big/file.bin", data, etag)
    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "big/file.bin", str(dst), Config=cfg)
    assert dst.read_bytes() == data
    # The ETag is stable: asked again, it is still the multipart ETag, not the whole-file MD5.
    assert s3.head_object(Bucket=bucket, Key="big/file.bin")["ETag"] == etag
    assert files_under(bpath) == ["big/file.bin"]


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_awscli_cp_up_down_and_server_side(aws, s3, data_dir, tmp_path):
    a, b = unique_bucket_name("cli-mp-a"), unique_bucket_name("cli-mp-b")
    aws("s3", "mb", f"s3://{a}")
    aws("s3", "mb", f"s3://{b}")
    data = os.urandom(40 * MiB + 777)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    aws("s3", "cp", src, f"s3://{a}/x/big.bin")
    etag = mp_etag(chunks(data, 8 * MiB))  # the cli's default multipart_chunksize is 8 MiB
    assert_object(s3, data_dir / a, a, "x/big.bin", data, etag)
    dst = tmp_path / "down.bin"
    aws("s3", "cp", f"s3://{a}/x/big.bin", dst)
    assert dst.read_bytes() == data
    # Server-side copy: above 8 MiB the cli uses CreateMultipartUpload + UploadPartCopy.
    aws("s3", "cp", f"s3://{a}/x/big.bin", f"s3://{b}/y/copy.bin")
    assert_object(s3, data_dir / b, b, "y/copy.bin", data, etag)
    assert files_under(data_dir / b) == ["y/copy.bin"]
    assert get_bytes(s3, a, "x/big.bin") == data


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_boto3_managed_copy_uses_upload_part_copy(server, bucket, bpath):
    c = server.client()
    calls = []
    c.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    data = os.urandom(12 * MiB + 5)
    put(c, bucket, "src.bin", data)
    cfg = TransferConfig(multipart_threshold=P5, multipart_chunksize=P5)
    c.copy({"Bucket": bucket, "Key": "src.bin"}, bucket, "dst/copy.bin", Config=cfg)
    assert calls.count("UploadPartCopy") == 3, calls
    assert "CompleteMultipartUpload" in calls
    assert_object(c, bpath, bucket, "dst/copy.bin", data, mp_etag(chunks(data, P5)))


# ------------------------------------------------------------------------------ low-level API


def test_initiate_result_xml(server, s3, bucket):
    r = raw_request(server, "POST", f"/{bucket}/dir/k%20ey", query=[("uploads", "")])
    assert r.status == 200, r
    root = xml_strip_ns(r.body)
    assert root.tag == "InitiateMultipartUploadResult"
    assert root.findtext("Bucket") == bucket
    assert root.findtext("Key") == "dir/k ey"
    uid = root.findtext("UploadId")
    assert uid
    assert part_numbers(s3, bucket, "dir/k ey", uid) == []


@upstream_cannot("rclone", "rclone serve s3 answers 501 NotImplemented for a part uploaded again")
def test_upload_part_replace_and_list_parts_paging(s3, bucket):
    parts = [os.urandom(1000 + i) for i in range(5)]
    uid, etags = start_upload(s3, bucket, "k", parts)
    new3 = b"replacement part three"
    e3 = upload(s3, bucket, "k", uid, 3, new3)
    r = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert r["UploadId"] == uid and r["Key"] == "k" and r["Bucket"] == bucket
    assert not r.get("IsTruncated")
    got = [(p["PartNumber"], p["ETag"], p["Size"]) for p in r["Parts"]]
    want = [(i + 1, etags[i], len(parts[i])) for i in range(5)]
    want[2] = (3, e3, len(new3))
    assert got == want
    pages, marker = [], {}
    for _ in range(4):
        r = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2, **marker)
        pages.append([p["PartNumber"] for p in r.get("Parts", [])])
        if not r.get("IsTruncated"):
            break
        assert r["NextPartNumberMarker"] == pages[-1][-1]
        marker = {"PartNumberMarker": r["NextPartNumberMarker"]}
    assert pages == [[1, 2], [3, 4], [5]]
    for beyond in (5, 50):
        r = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, PartNumberMarker=beyond)
        assert status_of(r) == 200
        assert r.get("Parts", []) == [] and not r.get("IsTruncated")


def test_list_multipart_uploads(s3, bucket):
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert status_of(r) == 200 and r.get("Uploads", []) == []
    u1 = create(s3, bucket, "a/one")
    u2 = create(s3, bucket, "b/two")
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == [("a/one", u1), ("b/two", u2)]
    r = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == [("a/one", u1)]
    s3.abort_multipart_upload(Bucket=bucket, Key="a/one", UploadId=u1)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [u2]


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_complete_out_of_order(s3, bucket, bpath):
    parts = [os.urandom(P5), os.urandom(P5), b"tail"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    e = expect_error(400, "InvalidPartOrder", complete, s3, bucket, "k", uid,
                     [(2, etags[1]), (1, etags[0]), (3, etags[2])])
    assert not (bpath / "k").exists()
    # The failed Complete keeps the upload: a corrected one succeeds.
    assert part_numbers(s3, bucket, "k", uid) == [1, 2, 3], e
    r = complete(s3, bucket, "k", uid, [(1, etags[0]), (2, etags[1]), (3, etags[2])])
    assert r["ETag"] == mp_etag(parts)
    assert_object(s3, bpath, bucket, "k", b"".join(parts), mp_etag(parts))


@pytest.mark.parametrize("case", ["wrong_etag", "missing_part"])
def test_complete_invalid_part_keeps_upload(s3, bucket, bpath, case):
    parts = [os.urandom(P5), b"last part"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    bad = {"wrong_etag": [(1, etags[0]), (2, quoted_md5(b"other"))],
           "missing_part": [(1, etags[0]), (3, etags[1])]}[case]
    expect_error(400, "InvalidPart", complete, s3, bucket, "k", uid, bad)
    assert not (bpath / "k").exists()
    assert part_numbers(s3, bucket, "k", uid) == [1, 2]
    r = complete(s3, bucket, "k", uid, [(1, etags[0]), (2, etags[1])])
    assert status_of(r) == 200 and r["ETag"] == mp_etag(parts)
    assert (bpath / "k").read_bytes() == b"".join(parts)


@upstream_cannot("rclone", "rclone serve s3 completes only with every part uploaded (the test then completes with part 1 alone)")
def test_complete_entity_too_small(s3, bucket, bpath):
    parts = [os.urandom(P5 - 1), b"last"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    expect_error(400, "EntityTooSmall", complete, s3, bucket, "k", uid, [(1, etags[0]), (2, etags[1])])
    assert not (bpath / "k").exists()
    assert part_numbers(s3, bucket, "k", uid) == [1, 2]
    # Completing with the small part alone (it is then the last part) is fine.
    r = complete(s3, bucket, "k", uid, [(1, etags[0])])
    assert r["ETag"] == mp_etag(parts[:1])
    assert (bpath / "k").read_bytes() == parts[0]


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
@pytest.mark.parametrize("quoted", [True, False])
def test_complete_etag_quoting(s3, bucket, bpath, quoted):
    parts = [os.urandom(P5), b"end"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    if not quoted:
        etags = [e.strip('"') for e in etags]
    r = complete(s3, bucket, "k", uid, [(1, etags[0]), (2, etags[1])])
    assert status_of(r) == 200 and r["ETag"] == mp_etag(parts)
    assert r["Bucket"] == bucket and r["Key"] == "k"
    assert_object(s3, bpath, bucket, "k", b"".join(parts), mp_etag(parts))


@upstream_cannot("rclone", "rclone serve s3 completes only with every part uploaded")
def test_complete_with_subset_of_parts(s3, bucket, bpath):
    parts = [os.urandom(P5), os.urandom(P5), os.urandom(3 * MiB)]
    uid, etags = start_upload(s3, bucket, "k", parts)
    r = complete(s3, bucket, "k", uid, [(1, etags[0]), (3, etags[2])])
    want = [parts[0], parts[2]]
    assert r["ETag"] == mp_etag(want)
    assert_object(s3, bpath, bucket, "k", b"".join(want), mp_etag(want))
    assert files_under(bpath) == ["k"]


@local_only("the upstream keeps its uploads in its own layout")
def test_parts_of_one_size_complete_without_a_copy(s3, data_dir, bucket, bpath):
    """Parts of one size are written in place into the upload's data file, and completion
    links that file as the object instead of copying it: the object has the data file's inode."""
    parts = [os.urandom(P5), os.urandom(P5), os.urandom(MiB + 5)]
    uid = create(s3, bucket, "in/place")
    etags = {n: upload(s3, bucket, "in/place", uid, n, parts[n - 1]) for n in (2, 3, 1)}
    data_file = data_dir / ".s3serve" / "uploads" / uid / "data"
    assert data_file.stat().st_size == sum(map(len, parts))
    inode = data_file.stat().st_ino
    r = complete(s3, bucket, "in/place", uid, sorted(etags.items()))
    assert r["ETag"] == mp_etag(parts)
    assert_object(s3, bpath, bucket, "in/place", b"".join(parts), mp_etag(parts))
    st = (bpath / "in" / "place").stat()
    assert (st.st_ino, st.st_nlink) == (inode, 1)
    assert sorted(p.name for p in (data_dir / ".s3serve" / "uploads" / uid).iterdir()) == ["done", "manifest"]
    # A retried Complete still gets the same answer.
    assert complete(s3, bucket, "in/place", uid, sorted(etags.items()))["ETag"] == mp_etag(parts)


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_boto3_parallel_upload_with_a_replaced_part(s3, bucket, bpath, tmp_path):
    """Ten parts in flight at once (part places are taken concurrently), then a part
    re-uploaded with other bytes: the object holds the newest bytes of every part."""
    data = os.urandom(70 * MiB + 99)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10)
    s3.upload_file(str(src), bucket, "par.bin", Config=cfg)
    assert_object(s3, bpath, bucket, "par.bin", data, mp_etag(chunks(data, 8 * MiB)))
    parts = chunks(data, 8 * MiB)
    uid, etags = start_upload(s3, bucket, "rep.bin", parts[:3])
    parts[1] = os.urandom(8 * MiB)
    etags[1] = upload(s3, bucket, "rep.bin", uid, 2, parts[1])
    complete(s3, bucket, "rep.bin", uid, list(enumerate(etags, 1)))
    assert_object(s3, bpath, bucket, "rep.bin", b"".join(parts[:3]), mp_etag(parts[:3]))


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_retried_complete_returns_same_result(s3, bucket, bpath):
    parts = [os.urandom(P5), b"again"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    numbered = [(1, etags[0]), (2, etags[1])]
    r1 = complete(s3, bucket, "k", uid, numbered)
    r2 = complete(s3, bucket, "k", uid, numbered)
    assert status_of(r2) == 200
    assert r1["ETag"] == r2["ETag"] == mp_etag(parts)
    assert (bpath / "k").read_bytes() == b"".join(parts)


@upstream_cannot("rclone", "it looks for the parts in s3serve's own upload layout")
def test_abort_leaves_no_trace(start_server):
    srv = start_server()
    c = srv.client()
    c.create_bucket(Bucket="abk")
    uid, etags = start_upload(c, "abk", "dir/k", [os.urandom(P5), b"x"])
    assert [p for p in upload_files(srv.uploads_root) if p.is_file()], "parts should be stored under .s3serve/uploads"
    r = c.abort_multipart_upload(Bucket="abk", Key="dir/k", UploadId=uid)
    assert status_of(r) == 204
    expect_error(404, "NoSuchUpload", c.list_parts, Bucket="abk", Key="dir/k", UploadId=uid)
    expect_error(404, "NoSuchUpload", c.upload_part, Bucket="abk", Key="dir/k", UploadId=uid, PartNumber=3,
                 Body=b"late")
    expect_error(404, "NoSuchUpload", complete, c, "abk", "dir/k", uid, [(1, etags[0]), (2, etags[1])])
    expect_error(404, "NoSuchUpload", c.abort_multipart_upload, Bucket="abk", Key="dir/k", UploadId=uid)
    left = upload_files(srv.uploads_root)
    assert [p for p in left if p.is_file()] == [] and [p for p in left if uid in p.name] == []
    assert files_under(srv.data_dir / "abk") == []
    assert c.list_multipart_uploads(Bucket="abk").get("Uploads", []) == []


@pytest.mark.parametrize("uid", ["no-such-upload-id", "0000000000000000", "../../abk"])
def test_unknown_upload_id(s3, bucket, uid):
    create(s3, bucket, "k")  # another upload exists; it must not matter
    calls = [
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId=uid),
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x"),
        lambda: complete(s3, bucket, "k", uid, [(1, quoted_md5(b"x"))]),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
    ]
    for call in calls:
        if uid.startswith(".."):  # a hostile id may also be refused as malformed
            with pytest.raises(Exception) as ei:
                call()
            assert err(ei) in ((404, "NoSuchUpload"), (400, "InvalidArgument"))
        else:
            expect_error(404, "NoSuchUpload", call)


@pytest.mark.parametrize("n", [0, 10001])
def test_part_number_out_of_range(server, s3, bucket, n):
    uid = create(s3, bucket, "k")
    r = raw_request(server, "PUT", f"/{bucket}/k", query=[("partNumber", str(n)), ("uploadId", uid)], body=b"data")
    assert (r.status, r.code) == (400, "InvalidArgument"), r
    assert part_numbers(s3, bucket, "k", uid) == []


@upstream_cannot("rclone", "rclone serve s3 lists a pending upload's temporary file")
def test_nothing_visible_before_complete(s3, bucket, bpath):
    parts = [os.urandom(P5), b"more"]
    uid, etags = start_upload(s3, bucket, "dir/obj", parts)
    expect_error(404, None, s3.head_object, Bucket=bucket, Key="dir/obj")
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="dir/obj")
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert r.get("Contents", []) == [] and r.get("CommonPrefixes", []) == []
    assert not (bpath / "dir" / "obj").exists()
    assert files_under(bpath) == []
    complete(s3, bucket, "dir/obj", uid, [(1, etags[0]), (2, etags[1])])
    assert (bpath / "dir" / "obj").read_bytes() == b"".join(parts)


def test_complete_if_none_match_existing_key(s3, bucket, bpath):
    put(s3, bucket, "k", b"already here")
    parts = [os.urandom(P5), b"new"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    numbered = [(1, etags[0]), (2, etags[1])]
    expect_error(412, "PreconditionFailed", complete, s3, bucket, "k", uid, numbered, IfNoneMatch="*")
    assert (bpath / "k").read_bytes() == b"already here"
    assert part_numbers(s3, bucket, "k", uid) == [1, 2]
    complete(s3, bucket, "k", uid, numbered)
    assert (bpath / "k").read_bytes() == b"".join(parts)


@pytest.mark.parametrize("exists", [True, False])
def test_complete_if_match(s3, bucket, bpath, exists):
    if exists:
        put(s3, bucket, "k", b"old")
    parts = [os.urandom(P5), b"new"]
    uid, etags = start_upload(s3, bucket, "k", parts)
    numbered = [(1, etags[0]), (2, etags[1])]
    want = (412, "PreconditionFailed") if exists else (404, "NoSuchKey")
    expect_error(*want, complete, s3, bucket, "k", uid, numbered, IfMatch=quoted_md5(b"not the object"))
    assert part_numbers(s3, bucket, "k", uid) == [1, 2]
    if exists:
        assert (bpath / "k").read_bytes() == b"old"
        complete(s3, bucket, "k", uid, numbered, IfMatch=quoted_md5(b"old"))
        assert (bpath / "k").read_bytes() == b"".join(parts)
    else:
        assert not (bpath / "k").exists()


# --------------------------------------------------------------------------- partNumber reads


@pytest.fixture
def three_parts(s3, bucket):
    parts = [os.urandom(P5), os.urandom(P5), os.urandom(MiB + 3)]
    uid, etags = start_upload(s3, bucket, "mp", parts)
    complete(s3, bucket, "mp", uid, list(zip((1, 2, 3), etags)))
    return parts


@upstream_cannot("rclone", "rclone serve s3 has no GET or HEAD ?partNumber")
def test_get_and_head_part_number(s3, bucket, three_parts):
    total = sum(map(len, three_parts))
    etag = mp_etag(three_parts)
    g = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert status_of(g) == 206
    assert g["Body"].read() == three_parts[1]
    h = headers_of(g)
    assert h["x-amz-mp-parts-count"] == "3"
    assert h["content-range"] == f"bytes {P5}-{2 * P5 - 1}/{total}"
    assert int(h["content-length"]) == P5
    assert g["ETag"] == etag
    hd = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert status_of(hd) == 206
    assert headers_of(hd)["x-amz-mp-parts-count"] == "3"
    assert headers_of(hd)["content-range"] == f"bytes {P5}-{2 * P5 - 1}/{total}"
    assert hd["ContentLength"] == P5
    g3 = s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert g3["Body"].read() == three_parts[2]
    assert headers_of(g3)["content-range"] == f"bytes {2 * P5}-{total - 1}/{total}"


def test_part_number_beyond_count(s3, bucket, three_parts):
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    status, code = err(ei)
    assert status in (400, 416) and code in ("InvalidPartNumber", "InvalidArgument", "InvalidRange"), (status, code)
    with pytest.raises(Exception) as ei:
        s3.head_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert err(ei)[0] in (400, 416)


# ----------------------------------------------------------------------------- UploadPartCopy


@pytest.fixture
def copy_src(s3, bucket):
    data = os.urandom(7 * MiB + 11)
    put(s3, bucket, "src.bin", data)
    return data


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_upload_part_copy_ranges(server, s3, bucket, bpath, copy_src):
    uid = create(s3, bucket, "dst")
    r = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src.bin"}, CopySourceRange=f"bytes=0-{P5 - 1}")
    assert r["CopyPartResult"]["ETag"] == quoted_md5(copy_src[:P5])
    assert r["CopyPartResult"]["LastModified"] is not None
    # Raw: the response document is <CopyPartResult> with ETag and LastModified.
    raw = raw_request(server, "PUT", f"/{bucket}/dst", query=[("partNumber", "2"), ("uploadId", uid)],
                      headers={"x-amz-copy-source": f"/{bucket}/src.bin",
                               "x-amz-copy-source-range": f"bytes={P5}-{len(copy_src) - 1}"})
    assert raw.status == 200, raw
    root = xml_strip_ns(raw.body)
    assert root.tag == "CopyPartResult"
    assert root.findtext("ETag") == quoted_md5(copy_src[P5:])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", root.findtext("LastModified") or "")
    parts = s3.list_parts(Bucket=bucket, Key="dst", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, P5), (2, len(copy_src) - P5)]
    e1, e2 = quoted_md5(copy_src[:P5]), quoted_md5(copy_src[P5:])
    r = complete(s3, bucket, "dst", uid, [(1, e1), (2, e2)])
    assert r["ETag"] == mp_etag([copy_src[:P5], copy_src[P5:]])
    assert_object(s3, bpath, bucket, "dst", copy_src, r["ETag"])


@pytest.mark.parametrize("case,extra,expected", [
    ("reversed", {"CopySourceRange": "bytes=5-1"}, [(400, "InvalidArgument")]),
    ("garbage", {"CopySourceRange": "bytes=x"}, [(400, "InvalidArgument")]),
    ("past_end", {"CopySourceRange": f"bytes=0-{8 * MiB}"}, [(400, "InvalidArgument"), (416, "InvalidRange")]),
    ("if_match", {"CopySourceIfMatch": '"00000000000000000000000000000000"'}, [(412, "PreconditionFailed")]),
    ("missing_source", {}, [(404, "NoSuchKey")]),
])
def test_upload_part_copy_errors(s3, bucket, copy_src, case, extra, expected):
    uid = create(s3, bucket, "dst")
    src_key = "nothing-here" if case == "missing_source" else "src.bin"
    with pytest.raises(Exception) as ei:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": src_key}, **extra)
    assert err(ei) in expected
    assert part_numbers(s3, bucket, "dst", uid) == []


# ---------------------------------------------------------------------- life cycle and flags


@upstream_cannot("rclone", "rclone serve s3 keeps uploads in memory only")
def test_upload_survives_restart(start_server):
    first = start_server()
    c1 = first.client()
    c1.create_bucket(Bucket="rst")
    p1, p2 = os.urandom(P5), b"finished by the second server"
    uid, (e1,) = start_upload(c1, "rst", "r/k", [p1])
    first.stop()
    second = start_server(data_dir=first.data_dir)
    c2 = second.client()
    assert [u["UploadId"] for u in c2.list_multipart_uploads(Bucket="rst")["Uploads"]] == [uid]
    e2 = upload(c2, "rst", "r/k", uid, 2, p2)
    assert part_numbers(c2, "rst", "r/k", uid) == [1, 2]
    r = complete(c2, "rst", "r/k", uid, [(1, e1), (2, e2)])
    assert r["ETag"] == mp_etag([p1, p2])
    assert_object(c2, second.data_dir / "rst", "rst", "r/k", p1 + p2, mp_etag([p1, p2]))


@upstream_cannot("rclone", "rclone serve s3 keeps a pending upload as a file in the bucket")
def test_delete_bucket_with_only_pending_upload(s3, bucket, bpath):
    uid, _ = start_upload(s3, bucket, "pending/k", [os.urandom(1000)])
    r = s3.delete_bucket(Bucket=bucket)
    assert status_of(r) == 204
    assert not bpath.exists()
    expect_error(404, None, s3.head_bucket, Bucket=bucket)
    with pytest.raises(Exception) as ei:
        s3.list_parts(Bucket=bucket, Key="pending/k", UploadId=uid)
    assert err(ei) in ((404, "NoSuchUpload"), (404, "NoSuchBucket"))


def test_delete_bucket_with_object_and_upload_not_empty(s3, bucket, bpath):
    put(s3, bucket, "obj", b"x")
    uid, _ = start_upload(s3, bucket, "k", [b"p"])
    expect_error(409, "BucketNotEmpty", s3.delete_bucket, Bucket=bucket)
    assert part_numbers(s3, bucket, "k", uid) == [1]


def test_read_only_create_denied(start_server, tmp_path):
    data = tmp_path / "data"
    (data / "robkt").mkdir(parents=True)
    srv = start_server("--read-only", data_dir=data)
    c = srv.client()
    expect_error(403, "AccessDenied", c.create_multipart_upload, Bucket="robkt", Key="new/dir/k")
    assert files_under(data / "robkt") == [] and not (data / "robkt" / "new").exists()
