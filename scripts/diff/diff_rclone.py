#!/usr/bin/env python3
"""Differential test: one scripted S3 session against `rclone serve s3` and `s3serve`.

Both servers start on fresh temporary directories with the same flags. The same ~60 SigV4
requests (built with botocore's signer, sent with `requests`, so headers and bodies are exact,
bad ones included) go to each. Every answer is reduced to a normal form (status, chosen
headers, parsed XML) and the two are compared step by step.

Differences are allowed only where EXPECTED (per step) or GLOBAL_RULES (per aspect, across
all steps) lists them with the reason s3serve's answer is the right one, and s3serve must give
the answer recorded there. The run fails when:
  * a step differs and is not listed;
  * a listed step now matches (the list must stay honest);
  * s3serve's answer to a listed step is not the recorded one.

Usage (from the repo root):
  .venv/bin/python scripts/diff/diff_rclone.py [--report FILE]
  .venv/bin/python scripts/diff/diff_rclone.py --self-test   # rclone against rclone
Env: RCLONE_BIN (default: what scripts/rclone-ref finds or installs), S3SERVE_BIN (default
target/release/s3serve).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AK, SK = "AKID", "SECRET"
REGION = "us-east-1"
REQUEST_TIMEOUT = 10
START_DEADLINE = 20
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

B = "diffbkt"          # main bucket
B2 = "diffbkt-two"     # empty bucket used by the DELETE ?cors step

# Object bodies, and their MD5 ETags computed here so conditional steps don't depend on a server.
HELLO = b"hello world\n"
DIGITS = b"0123456789abcdef"
MD5BODY = b"checked body\n"


def md5hex(b):
    return hashlib.md5(b).hexdigest()


def md5b64(b):
    return base64.b64encode(hashlib.md5(b).digest()).decode()


def q(s):
    """Percent-encode a key or query value the SigV4 way (RFC 3986 unreserved kept)."""
    return urllib.parse.quote(s, safe="-_.~/")


def qv(s):
    return urllib.parse.quote(s, safe="-_.~")


def delete_xml(keys, quiet=False):
    objs = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    qt = "<Quiet>true</Quiet>" if quiet else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="{S3_NS}">{qt}{objs}</Delete>'.encode()


TAGGING = (f'<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="{S3_NS}"><TagSet>'
           "<Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>").encode()

# ---------------------------------------------------------------------------------------------
# The session. Each step: (name, method, path, query, headers, body, auth). `query` may be a
# function of the per-server context (earlier normalised answers), for paging tokens.
# auth: "sign" | "wrong-secret" | "unknown-key" | "none".
# ---------------------------------------------------------------------------------------------


def step(name, method, path, query="", headers=None, body=b"", auth="sign"):
    return dict(name=name, method=method, path=path, query=query, headers=headers or {},
                body=body, auth=auth)


def token_of(ctx, prev):
    tok = ctx.get(prev, {}).get("_token")
    return "list-type=2&max-keys=2&continuation-token=" + qv(tok or "MISSING")


def marker_of(ctx, prev):
    last = ctx.get(prev, {}).get("_lastkey") or "MISSING"
    return "max-keys=2&marker=" + qv(last)


PLUS_KEY = "dir/a+b c.txt"
SESSION = [
    # --- buckets
    step("list_buckets_empty", "GET", "/"),
    step("create_bucket", "PUT", f"/{B}"),
    step("create_bucket_dup", "PUT", f"/{B}"),
    step("create_bucket_bad_name", "PUT", "/Bad_Name"),
    step("head_bucket", "HEAD", f"/{B}"),
    step("head_bucket_missing", "HEAD", "/nosuchbucket"),
    step("get_bucket_location", "GET", f"/{B}", "location"),
    step("get_bucket_versioning", "GET", f"/{B}", "versioning"),
    # --- PutObject
    step("put_plain", "PUT", f"/{B}/hello.txt", body=HELLO),
    step("put_meta_ctype", "PUT", f"/{B}/docs/digits.bin",
         headers={"Content-Type": "application/x-custom", "x-amz-meta-color": "blue"},
         body=DIGITS),
    step("put_md5_good", "PUT", f"/{B}/md5.txt", headers={"Content-MD5": md5b64(MD5BODY)},
         body=MD5BODY),
    step("put_md5_bad", "PUT", f"/{B}/md5bad.txt", headers={"Content-MD5": md5b64(b"other")},
         body=MD5BODY),
    step("head_after_md5_bad", "HEAD", f"/{B}/md5bad.txt"),
    step("put_md5_invalid", "PUT", f"/{B}/md5inv.txt", headers={"Content-MD5": "not-base64!"},
         body=MD5BODY),
    step("put_if_none_match_new", "PUT", f"/{B}/dir/y.txt", headers={"If-None-Match": "*"},
         body=b"y\n"),
    step("put_plus_space_key", "PUT", f"/{B}/" + q(PLUS_KEY), body=b"plus\n"),
    step("put_nested", "PUT", f"/{B}/dir/sub/x.txt", body=b"x\n"),
    # --- HeadObject / GetObject
    step("head_object", "HEAD", f"/{B}/docs/digits.bin"),
    step("get_object", "GET", f"/{B}/docs/digits.bin"),
    step("get_plain", "GET", f"/{B}/hello.txt"),
    step("get_missing", "GET", f"/{B}/nope.txt"),
    step("get_range", "GET", f"/{B}/docs/digits.bin", headers={"Range": "bytes=2-5"}),
    step("get_range_suffix", "GET", f"/{B}/docs/digits.bin", headers={"Range": "bytes=-3"}),
    step("get_range_out", "GET", f"/{B}/docs/digits.bin", headers={"Range": "bytes=100-"}),
    step("get_range_multi", "GET", f"/{B}/docs/digits.bin", headers={"Range": "bytes=0-1,3-4"}),
    step("get_if_none_match", "GET", f"/{B}/docs/digits.bin",
         headers={"If-None-Match": f'"{md5hex(DIGITS)}"'}),
    step("get_if_match_mismatch", "GET", f"/{B}/docs/digits.bin",
         headers={"If-Match": '"0123456789abcdef0123456789abcdef"'}),
    # --- listings
    step("list_v1_all", "GET", f"/{B}"),
    step("list_v2_prefix_delim", "GET", f"/{B}", "list-type=2&prefix=dir%2F&delimiter=%2F"),
    step("list_v2_delim_root", "GET", f"/{B}", "list-type=2&delimiter=%2F"),
    step("list_v2_page1", "GET", f"/{B}", "list-type=2&max-keys=2"),
    step("list_v2_page2", "GET", f"/{B}", lambda ctx: token_of(ctx, "list_v2_page1")),
    step("list_v2_page3", "GET", f"/{B}", lambda ctx: token_of(ctx, "list_v2_page2")),
    step("list_v1_page1", "GET", f"/{B}", "max-keys=2"),
    step("list_v1_page2", "GET", f"/{B}", lambda ctx: marker_of(ctx, "list_v1_page1")),
    step("list_v2_encoding_url", "GET", f"/{B}", "encoding-type=url&list-type=2&prefix=dir%2F"),
    step("list_v1_encoding_url", "GET", f"/{B}", "delimiter=%2F&encoding-type=url&prefix=dir%2F"),
    # --- CopyObject
    step("copy_default", "PUT", f"/{B}/copy1.bin",
         headers={"x-amz-copy-source": f"/{B}/docs/digits.bin"}),
    step("head_copy_default", "HEAD", f"/{B}/copy1.bin"),
    step("copy_replace", "PUT", f"/{B}/copy2.bin",
         headers={"x-amz-copy-source": f"/{B}/docs/digits.bin",
                  "x-amz-metadata-directive": "REPLACE", "Content-Type": "text/x-replaced",
                  "x-amz-meta-shape": "round"}),
    step("head_copy_replace", "HEAD", f"/{B}/copy2.bin"),
    step("copy_self_no_replace", "PUT", f"/{B}/docs/digits.bin",
         headers={"x-amz-copy-source": f"/{B}/docs/digits.bin"}),
    step("copy_missing_source", "PUT", f"/{B}/copy3.bin",
         headers={"x-amz-copy-source": f"/{B}/nope.txt"}),
    # --- conditional write on an existing key
    step("put_if_none_match_existing", "PUT", f"/{B}/hello.txt",
         headers={"If-None-Match": "*"}, body=b"overwritten\n"),
    step("get_after_if_none_match", "GET", f"/{B}/hello.txt"),
    # --- subresources that must not fall through to data operations
    step("get_object_acl", "GET", f"/{B}/hello.txt", "acl"),
    step("put_object_tagging", "PUT", f"/{B}/hello.txt", "tagging",
         headers={"Content-Type": "application/xml"}, body=TAGGING),
    step("get_after_put_tagging", "GET", f"/{B}/hello.txt"),
    step("delete_object_tagging", "DELETE", f"/{B}/hello.txt", "tagging"),
    step("get_after_delete_tagging", "GET", f"/{B}/hello.txt"),
    step("get_bucket_policy", "GET", f"/{B}", "policy"),
    step("create_bucket_two", "PUT", f"/{B2}"),
    step("delete_bucket_cors", "DELETE", f"/{B2}", "cors"),
    step("head_bucket_after_cors", "HEAD", f"/{B2}"),
    # --- unsafe key
    step("put_unsafe_key", "PUT", f"/{B}/a/../b", body=b"escape\n"),
    step("get_after_unsafe_key", "GET", f"/{B}/b"),
    # --- deletes
    step("delete_object", "DELETE", f"/{B}/dir/y.txt"),
    step("delete_missing", "DELETE", f"/{B}/nope.txt"),
    step("delete_objects", "POST", f"/{B}", "delete",
         headers={"Content-MD5": md5b64(delete_xml(["md5.txt", "nope2.txt"]))},
         body=delete_xml(["md5.txt", "nope2.txt"])),
    step("delete_objects_quiet", "POST", f"/{B}", "delete",
         headers={"Content-MD5": md5b64(delete_xml(["dir/sub/x.txt"], True))},
         body=delete_xml(["dir/sub/x.txt"], True)),
    step("list_after_deletes", "GET", f"/{B}", "list-type=2"),
    # --- auth
    step("auth_wrong_secret", "GET", f"/{B}", "list-type=2", auth="wrong-secret"),
    step("auth_unknown_key", "GET", f"/{B}", "list-type=2", auth="unknown-key"),
    step("auth_unsigned", "GET", f"/{B}", "list-type=2", auth="none"),
    # --- DeleteBucket
    step("delete_bucket_non_empty", "DELETE", f"/{B}"),
    step("delete_rest", "POST", f"/{B}", "delete",
         headers={"Content-MD5": md5b64(delete_xml(
             ["hello.txt", "docs/digits.bin", PLUS_KEY, "copy1.bin", "copy2.bin"], True))},
         body=delete_xml(["hello.txt", "docs/digits.bin", PLUS_KEY, "copy1.bin", "copy2.bin"],
                         True)),
    step("delete_bucket_empty", "DELETE", f"/{B}"),
    step("list_buckets_final", "GET", "/"),
]

# ---------------------------------------------------------------------------------------------
# Expected differences, per step: why s3serve is right, and the fields its answer must have.
# ---------------------------------------------------------------------------------------------
class OneOf(tuple):
    """An expected field that may take any of several values."""

    def __repr__(self):
        return " or ".join(map(repr, self))


def matches(want, got):
    return got in want if isinstance(want, OneOf) else got == want


META_BLUE = ["x-amz-meta-color: blue"]
EXPECTED = {
    "create_bucket_dup": (
        "409 BucketAlreadyOwnedByYou: the caller already owns it (AWS CreateBucket errors); "
        "rclone's BucketAlreadyExists means another account owns the name",
        {"status": 409, "code": "BucketAlreadyOwnedByYou"}),
    "get_range_out": (
        "416 carries Content-Range: bytes */16 so the client learns the size (RFC 9110 "
        "§15.5.17, protocol-notes B10); rclone sends no Content-Range",
        {"status": 416, "code": "InvalidRange", "content-range": "bytes */16"}),
    "get_range": (
        "206 Partial Content for a satisfiable range (RFC 9110 §15.3.7, AWS GetObject); "
        "rclone's gofakes3 fork answers 200 with a partial body",
        {"status": 206, "content-range": "bytes 2-5/16", "body": repr(DIGITS[2:6])}),
    "get_range_suffix": (
        "206 for a suffix range too (RFC 9110 §14.1.2, AWS GetObject)",
        {"status": 206, "content-range": "bytes 13-15/16", "body": repr(DIGITS[13:])}),
    "get_range_multi": (
        "AWS ignores a multi-range Range header and answers 200 with the whole object "
        "(protocol-notes B10; RFC 9110 lets a server ignore Range); rclone answers 501",
        {"status": 200, "body": repr(DIGITS)}),
    "get_if_none_match": (
        "304 carries ETag and Last-Modified and no other representation metadata (RFC 9110 "
        "§15.4.5); rclone replays the x-amz-meta-* headers",
        {"status": 304, "etag": f'"{md5hex(DIGITS)}"', "last-modified": True, "meta": None}),
    "get_if_match_mismatch": (
        "412 PreconditionFailed when If-Match fails (RFC 9110 §13.1.1, AWS GetObject); "
        "rclone ignores If-Match and sends the object",
        {"status": 412}),
    "head_copy_default": (
        "a COPY-directive copy keeps exactly the source's metadata and Content-Type (AWS "
        "CopyObject); rclone adds an x-amz-meta-mtime the source never had",
        {"status": 200, "meta": META_BLUE, "content-type": "application/x-custom"}),
    "head_copy_replace": (
        "REPLACE takes metadata and Content-Type from the request only (AWS CopyObject "
        "x-amz-metadata-directive); rclone ignores the directive and keeps color=blue",
        {"status": 200, "meta": ["x-amz-meta-shape: round"], "content-type": "text/x-replaced"}),
    "copy_self_no_replace": (
        "copying an object onto itself without REPLACE is 400 InvalidRequest (AWS CopyObject); "
        "rclone answers 200 with an empty CopyObjectResult",
        {"status": 400, "code": "InvalidRequest"}),
    "put_if_none_match_existing": (
        "If-None-Match: * on an existing key is 412 PreconditionFailed (AWS conditional "
        "writes); rclone ignores the header and overwrites",
        {"status": 412, "code": "PreconditionFailed"}),
    "get_after_if_none_match": (
        "the object keeps its bytes because the conditional PUT was refused",
        {"status": 200, "body": repr(HELLO)}),
    "get_object_acl": (
        "501 NotImplemented for GetObjectAcl instead of the object's bytes "
        "(rclone-behavior §2; AWS ErrorResponses NotImplemented)",
        {"status": 501, "code": "NotImplemented"}),
    "put_object_tagging": (
        "501 instead of overwriting the object with the Tagging XML (rclone-behavior §2)",
        {"status": 501, "code": "NotImplemented"}),
    "get_after_put_tagging": (
        "the object survived the PUT ?tagging unchanged",
        {"status": 200, "body": repr(HELLO)}),
    "delete_object_tagging": (
        "501 instead of deleting the object (rclone-behavior §2)",
        {"status": 501, "code": "NotImplemented"}),
    "get_after_delete_tagging": (
        "the object survived the DELETE ?tagging",
        {"status": 200, "body": repr(HELLO)}),
    "get_bucket_policy": (
        "501 instead of a ListObjects body served as the policy (rclone-behavior §2)",
        {"status": 501, "code": "NotImplemented"}),
    "delete_bucket_cors": (
        "501 instead of deleting the bucket (rclone-behavior §2)",
        {"status": 501, "code": "NotImplemented"}),
    "head_bucket_after_cors": (
        "the bucket survived the DELETE ?cors",
        {"status": 200}),
    "list_after_deletes": (
        "hello.txt is still listed because DELETE ?tagging did not delete it",
        {"status": 200, "keycount": "5"}),
    "list_buckets_final": (
        "diffbkt-two still exists because DELETE ?cors did not delete it",
        {"status": 200, "buckets": [B2]}),
    "auth_wrong_secret": (
        "every response carries x-amz-request-id, errors included (AWS ErrorResponses); "
        "rclone's auth layer sits outside the part that adds it",
        {"status": 403, "code": "SignatureDoesNotMatch", "request-id": True}),
    "auth_unknown_key": (
        "x-amz-request-id on every response, as above",
        {"status": 403, "code": "InvalidAccessKeyId", "request-id": True}),
    "auth_unsigned": (
        "an anonymous request to a server that requires keys is 403 AccessDenied (AWS "
        "ErrorResponses); rclone answers 400 UnsupportedAlgorithm and no request id",
        {"status": 403, "code": "AccessDenied", "request-id": True}),
}

# Differences that cut across many steps. Each rule pulls one aspect out of every answer;
# s3serve's value must satisfy `ok`, and rclone must differ somewhere (or the rule is stale).
ECHO_CANDIDATES = {
    "x-amz-date", "x-amz-content-sha256", "content-md5", "x-amz-copy-source",
    "x-amz-metadata-directive", "authorization", "if-none-match", "if-match", "mtime",
    "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm", "expect",
}
GLOBAL_RULES = {
    "meta_names_lower_case": (
        "x-amz-meta-* names come back lower-case, as stored and as AWS sends them; rclone "
        "title-cases them (X-Amz-Meta-Color), and boto3 then reports {'Color': ...}",
        "g_metacase", lambda v: v is None or all(k == k.lower() for k in v)),
    "xml_content_type": (
        "XML bodies are served as application/xml, as AWS does (protocol-notes B8); rclone "
        "lets Go sniff text/xml; charset=utf-8",
        "g_ct", lambda v: v is None or v.split(";")[0].strip() == "application/xml"),
    "no_echoed_request_headers": (
        "GET/HEAD return stored metadata only; rclone replays the PUT request's own headers "
        "(X-Amz-Date, X-Amz-Content-Sha256, Content-Md5, X-Amz-Copy-Source, ...)",
        "g_echo", lambda v: not v),
    "listing_etag_quoted": (
        "ETags are quoted in listings as in headers (AWS ListObjectsV2, protocol-notes B9); "
        "rclone lists bare hex",
        "g_etagq", lambda v: v is None or all(v)),
    "xmlns_on_results": (
        "result documents carry xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\" as AWS's do; "
        "rclone omits it on DeleteResult, CopyObjectResult and VersioningConfiguration",
        "g_xmlns", lambda v: v is None or v is True),
}

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, label, argv_fn, workdir):
        self.label = label
        self.data = os.path.join(workdir, label + "-data")
        os.makedirs(self.data)
        self.port = free_port()
        self.argv = argv_fn(f"127.0.0.1:{self.port}", self.data)
        self.log_path = os.path.join(workdir, label + ".log")
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()

    def wait_ready(self):
        deadline = time.time() + START_DEADLINE
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not accept on :{self.port} within "
                           f"{START_DEADLINE}s:\n" + self.log_tail())

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"


def rclone_argv(binary):
    return lambda addr, data: [binary, "serve", "s3", "--addr", addr,
                               "--auth-key", f"{AK},{SK}", data]


def s3serve_argv(binary):
    return lambda addr, data: [binary, "--addr", addr, "--auth-key", f"{AK},{SK}", data]


def find_rclone(arg):
    if arg:
        return arg
    if os.environ.get("RCLONE_BIN"):
        return os.environ["RCLONE_BIN"]
    out = subprocess.run([os.path.join(REPO, "scripts", "rclone-ref")], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=300).stdout
    return out.strip()


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def send(session, endpoint, st, ctx):
    query = st["query"](ctx) if callable(st["query"]) else st["query"]
    url = endpoint + st["path"] + ("?" + query if query else "")
    headers = dict(st["headers"])
    if st["auth"] != "none":
        ak, sk = AK, SK
        if st["auth"] == "wrong-secret":
            sk = "WRONG-SECRET"
        elif st["auth"] == "unknown-key":
            ak = "NOSUCHKEY"
        areq = AWSRequest(method=st["method"], url=url, data=st["body"], headers=headers)
        S3SigV4Auth(Credentials(ak, sk), "s3", REGION).add_auth(areq)
        headers = {k: v for k, v in areq.headers.items()}
    prep = requests.Request(st["method"], endpoint + "/", headers=headers,
                            data=st["body"] or None).prepare()
    if st["method"] in ("PUT", "POST") and not st["body"]:
        prep.headers["Content-Length"] = "0"
    # Set the URL after prepare(): requests/urllib3 would normalise `a/../b` away.
    prep.url = url
    resp = session.send(prep, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    return query, resp


def describe(st, query):
    skip = {"content-md5"}
    parts = [st["method"], st["path"] + ("?" + query if query else "")]
    for k, v in st["headers"].items():
        if k.lower() in skip:
            parts.append(f"{k}:" + ("good" if v == md5b64(st["body"]) else
                                    "mismatch" if len(v) == 24 else repr(v)))
        else:
            parts.append(f"{k}:{v}")
    if st["body"] and st["method"] == "PUT" and "x-amz-copy-source" not in st["headers"]:
        parts.append(f"[{len(st['body'])} B]")
    if st["auth"] != "sign":
        parts.append(f"({st['auth']})")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def local(tag):
    return tag.rsplit("}", 1)[-1]


def child_text(el, name):
    for c in el:
        if local(c.tag) == name:
            return c.text or ""
    return None


def children(el, name):
    return [c for c in el if local(c.tag) == name]


def summarize_xml(n, body):
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        n["body"] = f"unparsable XML: {e}"
        return
    tag = local(root.tag)
    n["xml"] = tag
    if tag != "Error":
        n["g_xmlns"] = root.tag.startswith("{" + S3_NS + "}")
    if tag == "Error":
        n["code"] = child_text(root, "Code")
    elif tag == "ListAllMyBucketsResult":
        bk = children(root, "Buckets")
        n["buckets"] = [child_text(b, "Name") for b in (bk[0] if bk else [])]
    elif tag == "ListBucketResult":
        enc = child_text(root, "EncodingType")
        dec = (lambda s: urllib.parse.unquote_plus(s)) if enc == "url" else (lambda s: s)
        keys, quoted = [], []
        for c in children(root, "Contents"):
            n["_lastkey"] = dec(child_text(c, "Key"))
            etag = child_text(c, "ETag") or ""
            quoted.append(etag.startswith('"') and etag.endswith('"') and len(etag) > 1)
            keys.append(f"{dec(child_text(c, 'Key'))} {child_text(c, 'Size')}B "
                        f"{etag.strip(chr(34))[:6]}")
        n["keys"] = keys
        n["prefixes"] = [dec(child_text(p, "Prefix")) for p in children(root, "CommonPrefixes")]
        n["truncated"] = child_text(root, "IsTruncated")
        kc = child_text(root, "KeyCount")
        if kc is not None or child_text(root, "ContinuationToken") is not None \
                or n.get("_v2"):
            n["keycount"] = kc
        n["encoding"] = enc
        tok = child_text(root, "NextContinuationToken")
        n["_token"] = tok
        n["next-token"] = tok is not None
        nm = child_text(root, "NextMarker")
        n["next-marker"] = dec(nm) if nm is not None else None
        n["g_etagq"] = quoted if quoted else None
    elif tag == "LocationConstraint":
        n["location"] = root.text or ""
    elif tag == "VersioningConfiguration":
        n["versioning"] = child_text(root, "Status") or ""
    elif tag == "CopyObjectResult":
        et = child_text(root, "ETag")
        n["copy-etag"] = et
        n["copy-lastmod"] = child_text(root, "LastModified") is not None
    elif tag == "DeleteResult":
        n["deleted"] = [child_text(d, "Key") for d in children(root, "Deleted")]
        n["errors"] = [f"{child_text(e, 'Key')}:{child_text(e, 'Code')}"
                       for e in children(root, "Error")]
    else:
        n["children"] = [local(c.tag) for c in root]


S3_ROOTS = {"Error", "ListAllMyBucketsResult", "ListBucketResult", "LocationConstraint",
            "VersioningConfiguration", "CopyObjectResult", "DeleteResult"}


def is_s3_xml(body):
    """An S3 response document (object bodies that happen to be XML are left opaque)."""
    if body.lstrip()[:1] != b"<":
        return False
    try:
        return local(ET.fromstring(body).tag) in S3_ROOTS
    except ET.ParseError:
        return True


def normalize(st, query, resp):
    h = resp.headers
    body = resp.content
    is_xml = is_s3_xml(body)
    n = {"status": resp.status_code, "_v2": "list-type=2" in (query or "")}
    method = st["method"]
    no_body_status = resp.status_code in (204, 304) or (method == "HEAD" and resp.status_code >= 300)
    ct = h.get("Content-Type")
    # The type of an empty answer means nothing, except HEAD of an object (the object's type).
    head_object = method == "HEAD" and resp.status_code == 200 and "/" in st["path"][1:]
    if is_xml:
        n["content-type"] = "(xml)"
        n["g_ct"] = ct
    elif body or head_object:
        n["content-type"] = ct
    n["etag"] = h.get("ETag")
    n["content-range"] = h.get("Content-Range")
    if not is_xml and not no_body_status and (body or head_object):
        n["content-length"] = h.get("Content-Length")
    n["last-modified"] = "Last-Modified" in h
    n["request-id"] = "x-amz-request-id" in h
    n["accept-ranges"] = h.get("Accept-Ranges")
    n["location-hdr"] = h.get("Location")
    metak = [k for k in h.keys() if k.lower().startswith("x-amz-meta-")]
    # Names are compared case-blind here; their case is the global rule meta_names_lower_case.
    # rclone stamps copies with the source mtime, which changes from run to run.
    meta = sorted(f"{k.lower()}: {'<mtime>' if k.lower() == 'x-amz-meta-mtime' else h[k]}"
                  for k in metak)
    n["meta"] = meta or None
    n["g_metacase"] = sorted(metak) or None
    n["g_echo"] = sorted(k for k in h.keys() if k.lower() in ECHO_CANDIDATES) or None
    if is_xml:
        summarize_xml(n, body)
    elif body:
        n["body"] = repr(body) if len(body) <= 64 else f"{len(body)} B md5={md5hex(body)[:8]}"
    n.pop("_v2")
    return n


def main_fields(n):
    return {k: v for k, v in n.items() if not k.startswith(("_", "g_"))}


SHORT = {"content-type": "CT", "etag": "ETag", "content-range": "CR", "content-length": "CL",
         "accept-ranges": "AR", "location-hdr": "Location", "request-id": "reqid",
         "last-modified": "LM"}


def render(n):
    parts = [str(n["status"])]
    if n.get("code"):
        parts.append(n["code"])
    for k, v in main_fields(n).items():
        if k in ("status", "code") or v is None or v == [] and k not in ("keys", "buckets",
                                                                          "deleted"):
            continue
        if k in ("last-modified", "request-id"):
            parts.append(SHORT[k] if v else f"no-{SHORT[k]}")
            continue
        if k == "etag":
            v = v[:7] + "…\"" if len(v) > 8 else v
        parts.append(f"{SHORT.get(k, k)}={json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v}")
    return " ".join(parts)


def md_cell(s):
    return s.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def compare(results, self_test):
    """results: list of (step, request, rclone_norm, s3serve_norm). Returns (rows, problems)."""
    rows, problems = [], []
    names = {st["name"] for st in SESSION}
    for key in EXPECTED:
        if key not in names:
            problems.append(f"EXPECTED lists unknown step {key!r}")
    for name, req, a, b in results:
        ma, mb = main_fields(a), main_fields(b)
        diff = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        if self_test:
            gdiff = [k for k in set(a) | set(b) if k.startswith("g_") and a.get(k) != b.get(k)]
            verdict = "same" if not diff and not gdiff else "DIFF (self-test)"
            if verdict != "same":
                problems.append(f"{name}: self-test sides differ in {diff + gdiff}")
            rows.append((name, req, a, b, verdict, ""))
            continue
        exp = EXPECTED.get(name)
        wrong = [k for k, v in exp[1].items() if not matches(v, mb.get(k))] if exp else []
        if wrong:
            verdict = ("WRONG s3serve answer: " +
                       ", ".join(f"{k}={mb.get(k)!r} (want {exp[1][k]!r})" for k in wrong))
            problems.append(f"{name}: {verdict}")
        elif not diff:
            if exp:
                verdict = "STALE: listed as a difference but now matches"
                problems.append(f"{name}: {verdict}")
            else:
                verdict = "same"
        elif not exp:
            verdict = "UNEXPECTED difference in " + ", ".join(diff)
            problems.append(f"{name}: {verdict}")
        else:
            verdict = "expected difference (" + ", ".join(diff) + ")"
        rows.append((name, req, a, b, verdict, exp[0] if exp else ""))
    gsum = {}
    if not self_test:
        for rule, (reason, field, ok) in GLOBAL_RULES.items():
            seen, bad = [], []
            for name, _req, a, b in results:
                if not ok(b.get(field)):
                    bad.append(f"{name} ({b.get(field)!r})")
                if a.get(field) != b.get(field) and not (a.get(field) is None
                                                          and b.get(field) is None):
                    seen.append(name)
            if bad:
                problems.append(f"global rule {rule}: s3serve violates it at {len(bad)} steps: "
                                + ", ".join(bad[:6]) + (", …" if len(bad) > 6 else ""))
            if not seen:
                problems.append(f"global rule {rule}: STALE, no step differs in it any more")
            gsum[rule] = (reason, seen, bad)
    return rows, gsum, problems


def report_md(rows, gsum, problems, labels):
    la, lb = labels
    out = [f"| # | step | request | {la} | {lb} | verdict |", "|---|---|---|---|---|---|"]
    for i, (name, req, a, b, verdict, _reason) in enumerate(rows, 1):
        rb = "= (same)" if verdict == "same" else render(b)
        mark = verdict if verdict == "same" else f"**{verdict}**"
        out.append(f"| {i} | {name} | `{md_cell(req)}` | {md_cell(render(a))} | "
                   f"{md_cell(rb)} | {md_cell(mark)} |")
    reasons = [(name, reason) for name, _r, _a, _b, v, reason in rows if reason]
    if reasons:
        out += ["", "### Why s3serve's answer is right (per step)", ""]
        out += [f"- **{name}**: {reason}" for name, reason in reasons]
    if gsum:
        out += ["", "### Differences across steps (not repeated in the table above)", ""]
        for rule, (reason, seen, bad) in gsum.items():
            out.append(f"- **{rule}**: {reason}. Seen at {len(seen)} steps"
                       + (f" ({', '.join(seen[:8])}{', …' if len(seen) > 8 else ''})" if seen else "")
                       + (f". s3serve VIOLATES it at {len(bad)} steps" if bad else "") + ".")
    out += ["", f"**Result: {'FAIL' if problems else 'PASS'}**"]
    out += [f"- {p}" for p in problems]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def run(servers):
    results = []
    sessions = [requests.Session() for _ in servers]
    ctxs = [{} for _ in servers]
    for st in SESSION:
        norms, req = [], None
        for srv, sess, ctx in zip(servers, sessions, ctxs):
            try:
                query, resp = send(sess, srv.endpoint, st, ctx)
                n = normalize(st, query, resp)
            except requests.RequestException as e:
                query = st["query"] if isinstance(st["query"], str) else "…"
                n = {"status": f"no answer ({type(e).__name__})"}
            ctx[st["name"]] = n
            norms.append(n)
            req = req or describe(st, query)
        results.append((st["name"], req, norms[0], norms[1]))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rclone-bin", help="rclone binary (env RCLONE_BIN; default: fetch it)")
    ap.add_argument("--self-test", action="store_true",
                    help="run rclone on both sides: every step must match")
    ap.add_argument("--report", metavar="FILE", help="also write the markdown table here")
    ap.add_argument("--json", metavar="FILE", help="write the normalised answers as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs and logs")
    args = ap.parse_args()

    t0 = time.time()
    rclone = find_rclone(args.rclone_bin)
    s3serve = os.environ.get("S3SERVE_BIN") or os.path.join(REPO, "target", "release", "s3serve")
    if not args.self_test and not os.access(s3serve, os.X_OK):
        print(f"s3serve binary not found at {s3serve} (set S3SERVE_BIN, or use --self-test)",
              file=sys.stderr)
        return 2
    labels = ("rclone", "rclone-2" if args.self_test else "s3serve")
    workdir = tempfile.mkdtemp(prefix="s3diff-")
    servers = [Server(labels[0], rclone_argv(rclone), workdir),
               Server(labels[1], rclone_argv(rclone) if args.self_test else s3serve_argv(s3serve),
                      workdir)]
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
        results = run(servers)
        died = [f"{s.label} exited during the session (code {s.proc.returncode}):\n"
                + s.log_tail() for s in servers if s.proc.poll() is not None]
    except RuntimeError as e:
        print(f"harness error: {e}", file=sys.stderr)
        return 2
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows, gsum, problems = compare(results, args.self_test)
    problems += died
    md = report_md(rows, gsum, problems, labels)
    md += f"\n({len(results)} steps, {time.time() - t0:.1f} s)\n"
    print(md)
    if args.report:
        with open(args.report, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"step": n, "request": r, labels[0]: a, labels[1]: b}
                       for n, r, a, b in results], f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
