"""Flexible checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) with boto3, the aws cli and raw
requests: verified while the body streams, stored, returned with checksum mode, and computed
for multipart objects from their parts."""

import base64
import hashlib
import os
import subprocess
import zlib

import pytest
from boto3.s3.transfer import TransferConfig

from conftest import upstream_cannot, AWS_BIN, AK, SK, expect_error, raw_request, unique_bucket_name

MIB = 1024 * 1024


def b64(b):
    return base64.b64encode(b).decode()


def crc32_b64(data):
    return b64(zlib.crc32(data).to_bytes(4, "big"))


@pytest.mark.parametrize("alg", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_put_with_each_algorithm_round_trips(s3, bucket, data_dir, alg):
    body = os.urandom(100_000)
    r = s3.put_object(Bucket=bucket, Key=f"k-{alg}", Body=body, ChecksumAlgorithm=alg)
    value = r[f"Checksum{alg}"]
    h = s3.head_object(Bucket=bucket, Key=f"k-{alg}", ChecksumMode="ENABLED")
    assert h[f"Checksum{alg}"] == value
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "FULL_OBJECT"
    if alg == "SHA256":
        assert value == b64(hashlib.sha256(body).digest())
    if alg == "SHA1":
        assert value == b64(hashlib.sha1(body).digest())
    # boto3 validates the returned checksum against the bytes it reads.
    g = s3.get_object(Bucket=bucket, Key=f"k-{alg}", ChecksumMode="ENABLED")
    assert g["Body"].read() == body and g[f"Checksum{alg}"] == value
    # Never on a range: the value describes the whole object.
    g = s3.get_object(Bucket=bucket, Key=f"k-{alg}", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert f"Checksum{alg}" not in g
    assert (data_dir / bucket / f"k-{alg}").read_bytes() == body


def test_default_boto3_put_stores_crc32(s3, bucket):
    body = b"default checksum settings"
    s3.put_object(Bucket=bucket, Key="d", Body=body)
    h = s3.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc32_b64(body)


@pytest.mark.parametrize("header,value", [
    ("x-amz-checksum-crc32", "AAAAAA=="),
    ("x-amz-checksum-sha256", b64(hashlib.sha256(b"other").digest())),
])
def test_wrong_checksum_is_bad_digest_and_nothing_is_stored(server, bucket, data_dir, header, value):
    r = raw_request(server, "PUT", f"/{bucket}/bad", headers={header: value}, body=b"the real body")
    assert r.status == 400 and r.code == "BadDigest", r.body
    assert not (data_dir / bucket / "bad").exists()
    assert [p.name for p in (data_dir / bucket).iterdir()] == []


def test_conflicting_checksum_headers_are_invalid(server, bucket):
    r = raw_request(server, "PUT", f"/{bucket}/x", body=b"x", headers={
        "x-amz-checksum-crc32": crc32_b64(b"x"), "x-amz-sdk-checksum-algorithm": "SHA256"})
    assert (r.status, r.code) == (400, "InvalidRequest")
    r = raw_request(server, "PUT", f"/{bucket}/x", body=b"x", headers={"x-amz-checksum-crc32": "not base64!"})
    assert (r.status, r.code) == (400, "InvalidRequest")


def test_delete_objects_checks_its_checksum(s3, server, bucket, data_dir):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"1")
    body = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    r = raw_request(server, "POST", f"/{bucket}", query={"delete": None}, body=body,
                    headers={"x-amz-checksum-crc32": "AAAAAA=="})
    assert (r.status, r.code) == (400, "BadDigest")
    assert (data_dir / bucket / "keep").exists()
    r = raw_request(server, "POST", f"/{bucket}", query={"delete": None}, body=body,
                    headers={"x-amz-checksum-crc32": crc32_b64(body)})
    assert r.status == 200 and not (data_dir / bucket / "keep").exists()


@pytest.mark.parametrize("alg", ["CRC32C", "CRC64NVME", "SHA256"])
def test_aws_cli_put_object_checksum_algorithm(server, bucket, data_dir, tmp_path, alg):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(50_000))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION="us-east-1",
               HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "cfg"))
    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3api", "put-object", "--bucket", bucket,
                        "--key", "cli", "--body", str(src), "--checksum-algorithm", alg],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (data_dir / bucket / "cli").read_bytes() == src.read_bytes()
    p = subprocess.run([AWS_BIN, "--endpoint-url", server.url, "s3api", "head-object", "--bucket", bucket,
                        "--key", "cli", "--checksum-mode", "ENABLED"], env=env, capture_output=True, text=True, timeout=60)
    assert f"Checksum{alg}" in p.stdout, p.stdout + p.stderr


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
def test_multipart_composite_sha256(s3, bucket):
    mp = s3.create_multipart_upload(Bucket=bucket, Key="m", ChecksumAlgorithm="SHA256")
    uid = mp["UploadId"]
    datas = [os.urandom(5 * MIB), os.urandom(1000)]
    parts = []
    for i, d in enumerate(datas, 1):
        r = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=i, Body=d, ChecksumAlgorithm="SHA256")
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(d).digest())
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    listed = s3.list_parts(Bucket=bucket, Key="m", UploadId=uid)
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [p["ChecksumSHA256"] for p in parts]
    wrong = [dict(parts[0], ChecksumSHA256=b64(hashlib.sha256(b"x").digest())), parts[1]]
    expect_error(400, "InvalidPart", s3.complete_multipart_upload, Bucket=bucket, Key="m", UploadId=uid,
                 MultipartUpload={"Parts": wrong})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={"Parts": parts})
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in datas)).digest()) + "-2"
    assert done["ChecksumSHA256"] == composite
    h = s3.head_object(Bucket=bucket, Key="m", ChecksumMode="ENABLED")
    assert h["ChecksumSHA256"] == composite
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "COMPOSITE"


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
def test_multipart_full_object_crc32_from_managed_upload(s3, bucket, tmp_path):
    data = os.urandom(12 * MIB + 77)
    src = tmp_path / "f"
    src.write_bytes(data)
    s3.upload_file(str(src), bucket, "full", Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
                   ExtraArgs={"ChecksumAlgorithm": "CRC32"})
    h = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    value = h["ChecksumCRC32"]
    kind = h["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"]
    if kind == "FULL_OBJECT":
        assert value == crc32_b64(data)
    else:
        assert value.endswith("-3")


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
def test_full_object_crc64nvme_multipart_is_the_whole_objects_crc(s3, bucket):
    mp = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT")
    uid = mp["UploadId"]
    datas = [os.urandom(5 * MIB), os.urandom(4321)]
    parts = []
    for i, d in enumerate(datas, 1):
        r = s3.upload_part(Bucket=bucket, Key="f", UploadId=uid, PartNumber=i, Body=d, ChecksumAlgorithm="CRC64NVME")
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC64NVME": r["ChecksumCRC64NVME"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=uid, MultipartUpload={"Parts": parts})
    whole = b"".join(datas)
    single = s3.put_object(Bucket=bucket, Key="single", Body=whole, ChecksumAlgorithm="CRC64NVME")["ChecksumCRC64NVME"]
    h = s3.head_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert h["ChecksumCRC64NVME"] == single
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "FULL_OBJECT"


def digest(alg, data):
    """The raw checksum of data, computed here (awscrt comes with the aws cli's deps)."""
    from awscrt import checksums
    crcs = {"CRC32": (checksums.crc32, 4), "CRC32C": (checksums.crc32c, 4), "CRC64NVME": (checksums.crc64nvme, 8)}
    if alg in crcs:
        fn, size = crcs[alg]
        return fn(data).to_bytes(size, "big")
    return hashlib.new(alg.lower(), data).digest()


# Every algorithm with each checksum type S3 allows it (CRC64NVME is full-object only, and the
# SHAs composite only).
CHECKSUM_MODES = [("CRC32", "FULL_OBJECT"), ("CRC32C", "FULL_OBJECT"), ("CRC64NVME", "FULL_OBJECT"),
                  ("CRC32", "COMPOSITE"), ("CRC32C", "COMPOSITE"), ("SHA1", "COMPOSITE"), ("SHA256", "COMPOSITE")]


def three_part_upload(s3, bucket, key, alg, kind):
    """Parts of 5 MiB of A, B and C with their checksums; returns (upload id, parts, data)."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=alg, ChecksumType=kind)["UploadId"]
    parts, datas = [], []
    for number, fill in enumerate(b"ABC", 1):
        body = bytes([fill]) * (5 * MIB)
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=number, Body=body,
                           **{f"Checksum{alg}": b64(digest(alg, body))})
        parts.append({"PartNumber": number, "ETag": r["ETag"], f"Checksum{alg}": r[f"Checksum{alg}"]})
        datas.append(body)
    return uid, parts, datas


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
def test_complete_accepts_the_documented_full_object_crc32(s3, bucket):
    """The reproduction from the issue: A, B, C parts, and the whole object's CRC32 WgDhBQ==."""
    uid, parts, datas = three_part_upload(s3, bucket, "abc", "CRC32", "FULL_OBJECT")
    assert crc32_b64(b"".join(datas)) == "WgDhBQ=="
    done = s3.complete_multipart_upload(Bucket=bucket, Key="abc", UploadId=uid, MultipartUpload={"Parts": parts},
                                        ChecksumCRC32="WgDhBQ==", ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == "WgDhBQ==" and done["ChecksumType"] == "FULL_OBJECT"


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
@pytest.mark.parametrize("alg,kind", CHECKSUM_MODES)
def test_complete_checks_the_claimed_object_checksum(s3, bucket, alg, kind):
    key = f"claimed-{alg}-{kind}"
    uid, parts, datas = three_part_upload(s3, bucket, key, alg, kind)
    if kind == "FULL_OBJECT":
        value = b64(digest(alg, b"".join(datas)))
    else:
        value = b64(digest(alg, b"".join(digest(alg, d) for d in datas)))
    with_count = value + "-3"
    complete = dict(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    wrong = b64(digest(alg, b"something else"))
    expect_error(400, "BadDigest", s3.complete_multipart_upload, **complete, **{f"Checksum{alg}": wrong})
    if kind == "COMPOSITE":
        # The part count after a composite value must be the number of parts completed.
        expect_error(400, "InvalidRequest", s3.complete_multipart_upload, **complete,
                     **{f"Checksum{alg}": value + "-2"})
        claim = with_count
    else:
        expect_error(400, "InvalidRequest", s3.complete_multipart_upload, **complete,
                     **{f"Checksum{alg}": with_count})
        claim = value
    other = "COMPOSITE" if kind == "FULL_OBJECT" else "FULL_OBJECT"
    expect_error(400, "InvalidRequest", s3.complete_multipart_upload, **complete, ChecksumType=other)
    # Every refusal kept the upload: the right claim completes it.
    done = s3.complete_multipart_upload(**complete, **{f"Checksum{alg}": claim}, ChecksumType=kind)
    stored = value if kind == "FULL_OBJECT" else with_count
    assert done[f"Checksum{alg}"] == stored
    h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert h[f"Checksum{alg}"] == stored
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == kind
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(datas)


def test_complete_refuses_a_checksum_the_upload_was_not_made_with(s3, bucket):
    uid, parts, _ = three_part_upload(s3, bucket, "mismatch", "CRC32", "FULL_OBJECT")
    expect_error(400, "InvalidRequest", s3.complete_multipart_upload, Bucket=bucket, Key="mismatch", UploadId=uid,
                 MultipartUpload={"Parts": parts}, ChecksumSHA256=b64(hashlib.sha256(b"x").digest()))


@pytest.fixture
def trailer_mode(monkeypatch):
    """boto3 sends aws-chunked bodies with trailer checksums only over https; make it believe
    the endpoint is https so it uses STREAMING-UNSIGNED-PAYLOAD-TRAILER over plain http."""
    import botocore.httpchecksum as hc
    real = hc.urlparse
    monkeypatch.setattr(hc, "urlparse", lambda u, *a: real(u, *a)._replace(scheme="https"))
    seen = []

    def record(request, **kwargs):
        seen.append(dict(request.headers))

    return seen, record


def test_boto3_forced_into_aws_chunked_trailer_mode(s3, bucket, data_dir, tmp_path, trailer_mode):
    seen, record = trailer_mode
    s3.meta.events.register("before-send.s3.*", record)
    try:
        body = os.urandom(300_000)
        s3.put_object(Bucket=bucket, Key="chunked", Body=body)
        src = tmp_path / "big"
        src.write_bytes(os.urandom(11 * MIB))
        s3.upload_file(str(src), bucket, "chunked-mp", Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    finally:
        s3.meta.events.unregister("before-send.s3.*", record)
    sent = [h for h in seen if "X-Amz-Trailer" in h]
    assert len(sent) >= 4, "boto3 did not use trailer mode"
    def text(v):
        return v.decode() if isinstance(v, bytes) else v
    assert all(text({k.lower(): v for k, v in h.items()}["x-amz-content-sha256"]) == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for h in sent), sent[:1]
    assert (data_dir / bucket / "chunked").read_bytes() == body
    assert (data_dir / bucket / "chunked-mp").read_bytes() == src.read_bytes()
    h = s3.head_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc32_b64(body)
    assert "ContentEncoding" not in h


def test_boto3_when_required_sends_no_checksum(server, bucket, data_dir):
    from conftest import make_client
    s3 = make_client(server.url, request_checksum_calculation="when_required")
    body = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="plain", Body=body)
    assert (data_dir / bucket / "plain").read_bytes() == body
    h = s3.head_object(Bucket=bucket, Key="plain", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in h


def signed_streaming_put(server, path, data, tamper=False, trailer=None):
    """A PUT with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body signed chunk by chunk,
    built from the SigV4 streaming spec (no Python SDK sends this over http)."""
    import datetime as dt
    import hmac as hm
    import http.client
    from conftest import AK, SK, _sigv4_key, sign_headers
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    when = dt.datetime.now(dt.timezone.utc)
    extra = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    if trailer:
        extra["x-amz-trailer"] = trailer[0]
    host = f"{server.host}:{server.port}"
    h = sign_headers("PUT", path, [], extra, mode, AK, SK, when=when, host=host)
    amz_date = h["x-amz-date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = _sigv4_key(SK, amz_date[:8], "us-east-1")
    prev = h["authorization"].rsplit("Signature=", 1)[1]
    body = b""
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)] + [b""]
    for c in chunks:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, hashlib.sha256(b"").hexdigest(), hashlib.sha256(c).hexdigest()])
        prev = hm.new(key, sts.encode(), hashlib.sha256).hexdigest()
        sent = (c[:-1] + bytes([c[-1] ^ 1])) if (tamper and c) else c
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + sent + (b"\r\n" if c else b"")
    if trailer:
        line = f"{trailer[0]}:{trailer[1]}"
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev, hashlib.sha256((line + "\n").encode()).hexdigest()])
        body += f"{line}\r\nx-amz-trailer-signature:{hm.new(key, sts.encode(), hashlib.sha256).hexdigest()}\r\n\r\n".encode()
    else:
        body += b"\r\n"
    h["content-length"] = str(len(body))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_signed_streaming_uploads(server, bucket, data_dir):
    data = os.urandom(150_000)
    status, body = signed_streaming_put(server, f"/{bucket}/signed", data)
    assert status == 200, body
    assert (data_dir / bucket / "signed").read_bytes() == data
    status, body = signed_streaming_put(server, f"/{bucket}/tampered", data, tamper=True)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    status, body = signed_streaming_put(server, f"/{bucket}/trailer", data, trailer=("x-amz-checksum-crc32", crc32_b64(data)))
    assert status == 200, body
    assert (data_dir / bucket / "trailer").read_bytes() == data
    status, body = signed_streaming_put(server, f"/{bucket}/badtrailer", data, trailer=("x-amz-checksum-crc32", "AAAAAA=="))
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    assert sorted(p.name for p in (data_dir / bucket).iterdir()) == ["signed", "trailer"]


@upstream_cannot("rclone", "rclone serve s3 keeps no flexible checksums")
def test_copy_keeps_or_computes_checksums(s3, bucket):
    body = os.urandom(20_000)
    s3.put_object(Bucket=bucket, Key="src", Body=body, ChecksumAlgorithm="CRC32C")
    kept = s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "src"})
    h = s3.head_object(Bucket=bucket, Key="kept", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32C"] == s3.head_object(Bucket=bucket, Key="src", ChecksumMode="ENABLED")["ChecksumCRC32C"]
    assert kept["CopyObjectResult"]["ChecksumCRC32C"] == h["ChecksumCRC32C"]
    new = s3.copy_object(Bucket=bucket, Key="sha", CopySource={"Bucket": bucket, "Key": "src"}, ChecksumAlgorithm="SHA256")
    want = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert new["CopyObjectResult"]["ChecksumSHA256"] == want
    assert s3.head_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")["ChecksumSHA256"] == want
