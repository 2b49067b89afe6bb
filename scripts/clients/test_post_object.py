"""POST Object (browser form uploads) with boto3's generate_presigned_post and requests."""

import os

import requests

from conftest import make_client, md5hex, unique_bucket_name


def presigned(server, bucket, key, fields=None, conditions=None, expires=300):
    s3 = make_client(server.url, signature_version="s3v4")
    return s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires)


def test_form_upload_with_policy_and_metadata(server, s3, bucket, data_dir):
    data = os.urandom(70_000)
    post = presigned(server, bucket, "uploads/${filename}",
                     fields={"x-amz-meta-owner": "browser", "Content-Type": "image/png"},
                     conditions=[["starts-with", "$key", "uploads/"], {"x-amz-meta-owner": "browser"},
                                 {"Content-Type": "image/png"}, ["content-length-range", 1, 1_000_000]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("cat.png", data)}, timeout=30)
    assert r.status_code == 204, r.text
    assert r.headers["ETag"] == f'"{md5hex(data)}"'
    assert (data_dir / bucket / "uploads" / "cat.png").read_bytes() == data
    h = s3.head_object(Bucket=bucket, Key="uploads/cat.png")
    assert h["Metadata"] == {"owner": "browser"} and h["ContentType"] == "image/png"


def test_success_action_status_and_redirect(server, bucket, data_dir):
    post = presigned(server, bucket, "s201", fields={"success_action_status": "201"},
                     conditions=[{"success_action_status": "201"}])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"hello")}, timeout=30)
    assert r.status_code == 201 and "<PostResponse>" in r.text and "<Key>s201</Key>" in r.text
    post = presigned(server, bucket, "redir", fields={"success_action_redirect": "http://example.invalid/done"},
                     conditions=[{"success_action_redirect": "http://example.invalid/done"}])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"hi")}, timeout=30, allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["Location"].startswith(f"http://example.invalid/done?bucket={bucket}&key=redir&etag=")
    assert (data_dir / bucket / "redir").read_bytes() == b"hi"


def test_policy_violations_store_nothing(server, bucket, data_dir):
    post = presigned(server, bucket, "small", conditions=[["content-length-range", 1, 10]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"x" * 11)}, timeout=30)
    assert r.status_code == 400 and "<Code>EntityTooLarge</Code>" in r.text
    post = presigned(server, bucket, "uploads/k", conditions=[["starts-with", "$key", "uploads/"]])
    bad_key = dict(post["fields"], key="elsewhere/k")
    r = requests.post(post["url"], data=bad_key, files={"file": ("x", b"x")}, timeout=30)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    extra = dict(post["fields"], **{"x-amz-meta-sneaky": "1"})
    r = requests.post(post["url"], data=extra, files={"file": ("x", b"x")}, timeout=30)
    assert r.status_code == 403 and "Extra input fields" in r.text
    forged = dict(post["fields"], policy=post["fields"]["policy"][:-4] + "AAA=")
    r = requests.post(post["url"], data=forged, files={"file": ("x", b"x")}, timeout=30)
    assert r.status_code in (400, 403), r.text
    expired = presigned(server, bucket, "late", expires=-10)
    r = requests.post(expired["url"], data=expired["fields"], files={"file": ("x", b"x")}, timeout=30)
    assert r.status_code == 403 and "Policy expired" in r.text
    r = requests.post(post["url"], data=post["fields"], timeout=30)
    assert r.status_code == 400
    assert sorted(p.name for p in (data_dir / bucket).iterdir()) == []
