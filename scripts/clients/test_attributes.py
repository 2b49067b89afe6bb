"""GetObjectAttributes through boto3: ETag, Checksum, ObjectParts, StorageClass, ObjectSize."""

import base64
import hashlib
import os

from conftest import upstream_cannot, expect_error, md5hex

MIB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_attributes_of_a_single_put(s3, bucket):
    body = os.urandom(1234)
    s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
    a = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL)
    assert a["ETag"] == md5hex(body)
    assert a["ObjectSize"] == 1234 and a["StorageClass"] == "STANDARD"
    assert a["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert "ObjectParts" not in a
    only = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == 1234 and "ETag" not in only


@upstream_cannot("rclone", "rclone serve s3 gives a multipart object the MD5 of its bytes as its ETag")
def test_attributes_of_a_multipart_object_with_paging(s3, bucket):
    mp = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    sizes = [5 * MIB, 5 * MIB, 777]
    parts = []
    for i, n in enumerate(sizes, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=mp["UploadId"], PartNumber=i, Body=os.urandom(n))
        parts.append({"PartNumber": i, "ETag": r["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=mp["UploadId"], MultipartUpload={"Parts": parts})
    a = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL, MaxParts=2)
    assert a["ETag"] == done["ETag"].strip('"')
    assert a["ObjectSize"] == sum(sizes)
    op = a["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and op["IsTruncated"] is True
    assert [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(1, 5 * MIB), (2, 5 * MIB)]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=op["NextPartNumberMarker"])
    assert [(p["PartNumber"], p["Size"]) for p in rest["ObjectParts"]["Parts"]] == [(3, 777)]


def test_attributes_errors(s3, bucket):
    expect_error(404, "NoSuchKey", s3.get_object_attributes, Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
