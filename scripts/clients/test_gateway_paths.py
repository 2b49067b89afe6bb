"""How a remote's path maps to buckets, checked against rclone serve s3 itself: both serve
the same upstream, at its root and below a bucket, and must show the same buckets and
objects."""

import os
import subprocess

import pytest

from conftest import RCLONE, UPSTREAM, UPSTREAM_AK, UPSTREAM_SK, Server, free_port, make_client

pytestmark = pytest.mark.skipif(bool(UPSTREAM), reason="starts its own upstream")


class Rclone:
    """rclone serve s3 of a remote, with the suite's keys."""

    def __init__(self, remote, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        env["RCLONE_CONFIG"] = str(tmp_path / "none.conf")
        self.log = open(tmp_path / f"rclone-{self.port}.log", "wb")
        self.proc = subprocess.Popen([RCLONE, "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                                      "--auth-key", "AKID,SECRET", remote], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        import socket
        import time
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("rclone serve s3 did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def view(s3):
    """Every bucket, and every key in it, as the server shows them."""
    out = {}
    for b in sorted(x["Name"] for x in s3.list_buckets()["Buckets"]):
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
            keys += [c["Key"] for c in page.get("Contents", [])]
        out[b] = sorted(keys)
    return out


@pytest.mark.parametrize("path", ["", "base", "base/pre"])
def test_remote_paths_map_to_buckets_as_rclone_maps_them(tmp_path, path):
    data = tmp_path / "data"
    for rel in ["base/pre/one/a.txt", "base/pre/one/sub/b.txt", "base/pre/two/c.txt",
                "base/top.txt", "other/d.txt"]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(rel.encode())
    up = Server(data, auth=((UPSTREAM_AK, UPSTREAM_SK),), workdir=tmp_path)
    remote = (f":s3,provider=Other,endpoint='{up.url}',"
              f"access_key_id={UPSTREAM_AK},secret_access_key={UPSTREAM_SK}:{path}")
    ours = Server(remote, workdir=tmp_path)
    theirs = Rclone(remote, tmp_path)
    try:
        want = view(make_client(theirs.url))
        assert want, "rclone serves something"
        assert view(ours.client()) == want
    finally:
        theirs.stop()
        ours.stop()
        up.stop()
