"""Storage behaviour seen through boto3: files changed on disk behind the server's back,
metadata persistence across restarts, atomic writes (no partial object ever visible),
crash leftovers, and a clean SIGTERM."""

import datetime as dt
import hashlib
import os
import shutil
import signal
import socket
import time

import pytest

from conftest import (
    cache_cannot,
    upstream_cannot,
    AK,
    SK,
    expect_error,
    files_under,
    get_bytes,
    md5hex,
    poll,
    put,
    quoted_md5,
    sign_headers,
    status_of,
)


def listed(s3, bucket, **kw):
    return {c["Key"]: c for c in s3.list_objects_v2(Bucket=bucket, **kw).get("Contents", [])}


# ------------------------------------------------------------------ changes behind our back


def test_file_created_on_disk_visible_at_once(s3, bucket, bpath):
    (bpath / "oob").mkdir()
    (bpath / "oob" / "new.txt").write_bytes(b"written by cp")
    entries = listed(s3, bucket)
    assert list(entries) == ["oob/new.txt"]
    assert entries["oob/new.txt"]["ETag"] == quoted_md5(b"written by cp")
    assert entries["oob/new.txt"]["Size"] == len(b"written by cp")
    h = s3.head_object(Bucket=bucket, Key="oob/new.txt")
    assert h["ETag"] == quoted_md5(b"written by cp")
    assert h["ContentLength"] == len(b"written by cp")
    g = s3.get_object(Bucket=bucket, Key="oob/new.txt")
    assert g["Body"].read() == b"written by cp"
    assert g["ETag"] == quoted_md5(b"written by cp")


@upstream_cannot("rclone", "rclone serve s3 caches directory listings (--dir-cache-time), so changes on its disk show late")
@cache_cannot("the cache keeps the upstream's listings and buckets for --dir-cache-time, as rclone does")
def test_dir_created_on_disk_visible_at_once(s3, bucket, bpath):
    put(s3, bucket, "first", b"1")  # warm any cache of the bucket listing
    listed(s3, bucket)
    (bpath / "newdir" / "sub").mkdir(parents=True)
    (bpath / "newdir" / "sub" / "a").write_bytes(b"a")
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["newdir/"]
    assert list(listed(s3, bucket, Prefix="newdir/")) == ["newdir/sub/a"]


@upstream_cannot("rclone", "rclone serve s3 caches directory listings (--dir-cache-time), so changes on its disk show late")
@cache_cannot("the cache keeps the upstream's listings and buckets for --dir-cache-time, as rclone does")
def test_file_changed_on_disk_gets_fresh_etag(s3, bucket, bpath):
    put(s3, bucket, "chg", b"version one")
    assert s3.head_object(Bucket=bucket, Key="chg")["ETag"] == quoted_md5(b"version one")
    assert listed(s3, bucket)["chg"]["ETag"] == quoted_md5(b"version one")
    (bpath / "chg").write_bytes(b"version two, longer")
    h = s3.head_object(Bucket=bucket, Key="chg")
    assert h["ETag"] == quoted_md5(b"version two, longer")
    assert h["ContentLength"] == len(b"version two, longer")
    assert listed(s3, bucket)["chg"]["ETag"] == quoted_md5(b"version two, longer")
    assert get_bytes(s3, bucket, "chg") == b"version two, longer"


def test_file_changed_same_size_new_mtime(s3, bucket, bpath):
    put(s3, bucket, "same", b"AAAAAAAA")
    assert s3.head_object(Bucket=bucket, Key="same")["ETag"] == quoted_md5(b"AAAAAAAA")
    (bpath / "same").write_bytes(b"BBBBBBBB")
    os.utime(bpath / "same", (1400000000, 1400000000))  # as rsync -t would leave it
    h = s3.head_object(Bucket=bucket, Key="same")
    assert h["ETag"] == quoted_md5(b"BBBBBBBB")
    assert h["LastModified"] == dt.datetime.fromtimestamp(1400000000, dt.timezone.utc)
    assert listed(s3, bucket)["same"]["ETag"] == quoted_md5(b"BBBBBBBB")
    g = s3.get_object(Bucket=bucket, Key="same")
    assert g["ETag"] == quoted_md5(b"BBBBBBBB")
    assert g["Body"].read() == b"BBBBBBBB"


def test_file_replaced_by_rename_on_disk(s3, bucket, bpath):
    put(s3, bucket, "ren", b"old content")
    s3.head_object(Bucket=bucket, Key="ren")
    tmp = bpath / "ren.tmp-outside"
    tmp.write_bytes(b"new content")
    os.utime(tmp, (1300000000, 1300000000))
    os.replace(tmp, bpath / "ren")
    assert s3.head_object(Bucket=bucket, Key="ren")["ETag"] == quoted_md5(b"new content")


@upstream_cannot("rclone", "rclone serve s3 caches directory listings (--dir-cache-time), so changes on its disk show late")
@cache_cannot("the cache keeps the upstream's listings and buckets for --dir-cache-time, as rclone does")
def test_file_removed_on_disk(s3, bucket, bpath):
    put(s3, bucket, "rm/me", b"x")
    put(s3, bucket, "stay", b"y")
    assert set(listed(s3, bucket)) == {"rm/me", "stay"}
    shutil.rmtree(bpath / "rm")
    assert set(listed(s3, bucket)) == {"stay"}
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="rm/me")
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="rm/me")


@upstream_cannot("rclone", "rclone serve s3 caches directory listings (--dir-cache-time), so changes on its disk show late")
@cache_cannot("the cache keeps the upstream's listings and buckets for --dir-cache-time, as rclone does")
def test_bucket_removed_on_disk(s3, bucket, bpath):
    put(s3, bucket, "x", b"x")
    shutil.rmtree(bpath)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect_error(404, "404", s3.head_bucket, Bucket=bucket)


def test_large_file_on_disk_etag(s3, bucket, bpath):
    data = os.urandom(5 * 1024 * 1024 + 3)
    (bpath / "big.bin").write_bytes(data)
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"] == f'"{md5hex(data)}"'
    assert get_bytes(s3, bucket, "big.bin") == data


# ---------------------------------------------------------------------------------- restart


@upstream_cannot("rclone", "rclone serve s3 keeps Content-Type and user metadata in memory only")
def test_metadata_survives_restart(start_server):
    srv = start_server()
    c = srv.client()
    c.create_bucket(Bucket="persist")
    c.put_object(
        Bucket="persist", Key="dir/photo.jpg.bin", Body=b"\xff\xd8 not really a jpeg",
        ContentType="image/jpeg",
        ContentDisposition="inline; filename=cat.jpg",
        ContentEncoding="identity",
        ContentLanguage="en",
        CacheControl="max-age=60",
        Expires=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        Metadata={"camera": "Pentax K1", "Shot-By": "Me"},
    )
    c.copy_object(Bucket="persist", Key="copied", CopySource={"Bucket": "persist", "Key": "dir/photo.jpg.bin"},
                  MetadataDirective="REPLACE", ContentType="text/x-copied", Metadata={"c": "1"})
    before = c.head_object(Bucket="persist", Key="dir/photo.jpg.bin")
    srv.stop()  # the exit status is checked in test_sigterm_exits_zero
    srv2 = start_server(data_dir=srv.data_dir)
    c2 = srv2.client()
    h = c2.head_object(Bucket="persist", Key="dir/photo.jpg.bin")
    assert h["ContentType"] == "image/jpeg"
    assert h["Metadata"] == {"camera": "Pentax K1", "shot-by": "Me"}
    assert h["ContentDisposition"] == "inline; filename=cat.jpg"
    assert h["ContentEncoding"] == "identity"
    assert h["ContentLanguage"] == "en"
    assert h["CacheControl"] == "max-age=60"
    assert h["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert h["ETag"] == before["ETag"] == quoted_md5(b"\xff\xd8 not really a jpeg")
    assert h["LastModified"] == before["LastModified"]
    hc = c2.head_object(Bucket="persist", Key="copied")
    assert hc["ContentType"] == "text/x-copied"
    assert hc["Metadata"] == {"c": "1"}


def test_metadata_not_in_bucket_listing_after_restart(start_server):
    # The metadata store must never show up as objects or buckets.
    srv = start_server()
    c = srv.client()
    c.create_bucket(Bucket="metab")
    c.put_object(Bucket="metab", Key="k", Body=b"x", Metadata={"a": "b"})
    srv.stop()
    srv2 = start_server(data_dir=srv.data_dir)
    c2 = srv2.client()
    assert [b["Name"] for b in c2.list_buckets()["Buckets"]] == ["metab"]
    assert [o["Key"] for o in c2.list_objects_v2(Bucket="metab")["Contents"]] == ["k"]


def test_sigterm_exits_zero(start_server):
    srv = start_server()
    srv.client().list_buckets()
    assert srv.stop() == 0


# ------------------------------------------------------------------- atomicity / partial writes


def _start_partial_put(srv, path, total, sent_bytes):
    """Open a signed PUT declaring `total` bytes, send `sent_bytes` of them; return the socket."""
    host = f"{srv.host}:{srv.port}"
    hdrs = sign_headers("PUT", path, [], {"content-length": str(total)}, "UNSIGNED-PAYLOAD", AK, SK, host=host)
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    sock.sendall(head.encode())
    sock.sendall(b"p" * sent_bytes)
    return sock


def test_truncated_upload_leaves_nothing(server, s3, bucket, bpath):
    sock = _start_partial_put(server, f"/{bucket}/partial", 4 * 1024 * 1024, 1024 * 1024)
    time.sleep(0.2)  # let the server start streaming (not an assertion)
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="partial")
    assert "partial" not in listed(s3, bucket)
    sock.shutdown(socket.SHUT_WR)
    try:
        sock.recv(65536)  # whatever the answer is (400 IncompleteBody or a close)
    except OSError:
        pass
    sock.close()
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="partial")
    assert poll(lambda: files_under(bpath) == [], timeout=10), files_under(bpath)
    assert "partial" not in listed(s3, bucket)


def test_truncated_upload_keeps_old_object(server, s3, bucket, bpath):
    put(s3, bucket, "keep", b"old and complete")
    sock = _start_partial_put(server, f"/{bucket}/keep", 2 * 1024 * 1024, 512 * 1024)
    time.sleep(0.2)
    assert get_bytes(s3, bucket, "keep") == b"old and complete"
    sock.close()
    assert poll(lambda: files_under(bpath) == ["keep"], timeout=10), files_under(bpath)
    assert get_bytes(s3, bucket, "keep") == b"old and complete"
    assert s3.head_object(Bucket=bucket, Key="keep")["ETag"] == quoted_md5(b"old and complete")


def test_incomplete_body_answer(server, s3, bucket):
    sock = _start_partial_put(server, f"/{bucket}/inc", 1000, 10)
    sock.shutdown(socket.SHUT_WR)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    sock.close()
    # Either a 400 (IncompleteBody) or a dropped connection; never a 200.
    assert not data.startswith(b"HTTP/1.1 200"), data[:200]
    if data:
        assert data.startswith(b"HTTP/1.1 400"), data[:300]
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="inc")


def test_crash_leftovers_swept_at_startup(start_server):
    srv = start_server()
    c = srv.client()
    c.create_bucket(Bucket="crash")
    c.put_object(Bucket="crash", Key="dir/kept", Body=b"kept")
    before = set(files_under(srv.data_dir))
    sock = _start_partial_put(srv, "/crash/dir/inflight", 8 * 1024 * 1024, 2 * 1024 * 1024)
    # Wait (bounded) for the server to start writing a temporary file, then crash it.
    poll(lambda: set(files_under(srv.data_dir)) - before, timeout=5)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    sock.close()
    srv2 = start_server(data_dir=srv.data_dir)
    c2 = srv2.client()
    assert [o["Key"] for o in c2.list_objects_v2(Bucket="crash")["Contents"]] == ["dir/kept"]
    expect_error(404, "404", c2.head_object, Bucket="crash", Key="dir/inflight")
    ok = poll(lambda: files_under(srv.data_dir / "crash") == ["dir/kept"], timeout=10)
    assert ok, f"leftovers after restart: {files_under(srv.data_dir / 'crash')}"


def test_no_temp_files_after_puts(s3, bucket, bpath):
    for i in range(5):
        put(s3, bucket, f"t/{i}", os.urandom(70000))
    put(s3, bucket, "t/0", b"overwritten")
    assert files_under(bpath) == [f"t/{i}" for i in range(5)]


def test_put_body_hash_on_disk(s3, bucket, bpath):
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = put(s3, bucket, "hash.bin", data)
    assert r["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert hashlib.md5((bpath / "hash.bin").read_bytes()).hexdigest() == md5hex(data)
    assert status_of(s3.head_object(Bucket=bucket, Key="hash.bin")) == 200
