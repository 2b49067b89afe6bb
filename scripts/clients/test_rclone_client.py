"""rclone as an S3 client (its s3 backend, provider Other, path style) against the server:
mkdir, copy up with mtimes, ls, check, server-side move, sync with deletes, copy down.
The rclone binary comes from RCLONE_BIN (scripts/test fetches the reference v1.75.2)."""

import os
import subprocess

import pytest

from conftest import upstream_cannot, AK, SK, files_under, md5hex, unique_bucket_name

RCLONE_BIN = os.environ.get("RCLONE_BIN", "")


@pytest.fixture
def rclone(server, tmp_path):
    if not RCLONE_BIN:
        pytest.fail("RCLONE_BIN is not set: run the suite through scripts/test, which fetches rclone")
    env = dict(os.environ)
    env.update({
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_S3S_TYPE": "s3",
        "RCLONE_CONFIG_S3S_PROVIDER": "Other",
        "RCLONE_CONFIG_S3S_ENDPOINT": server.url,
        "RCLONE_CONFIG_S3S_ACCESS_KEY_ID": AK,
        "RCLONE_CONFIG_S3S_SECRET_ACCESS_KEY": SK,
        "RCLONE_CONFIG_S3S_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_S3S_REGION": "us-east-1",
    })

    def run(*args, check=True):
        p = subprocess.run([RCLONE_BIN, *map(str, args)], env=env, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"rclone {args} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


def write_tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_rclone_copy_check_move_sync(rclone, data_dir, tmp_path):
    bucket = unique_bucket_name("rclone")
    src = tmp_path / "src"
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(300_000), "dir/sub/c with space+plus.txt": b"c" * 10}
    write_tree(src, files)
    os.utime(src / "a.txt", (1_600_000_000, 1_600_000_000))
    rclone("mkdir", f"s3s:{bucket}")
    assert (data_dir / bucket).is_dir()
    rclone("copy", src, f"s3s:{bucket}/up")
    up = data_dir / bucket / "up"
    on_disk = {rel: (up / rel).read_bytes() for rel in files_under(up)}
    assert on_disk == files
    # rclone stores the source mtime as X-Amz-Meta-Mtime: the file gets it too.
    assert int((data_dir / bucket / "up" / "a.txt").stat().st_mtime) == 1_600_000_000
    lsl = rclone("lsl", f"s3s:{bucket}/up").stdout
    assert "2020-09-13 12:26:40" in lsl and "dir/sub/c with space+plus.txt" in lsl
    md5 = rclone("md5sum", f"s3s:{bucket}/up").stdout
    assert f"{md5hex(files['dir/b.bin'])}  dir/b.bin" in md5
    rclone("check", src, f"s3s:{bucket}/up")
    rclone("moveto", f"s3s:{bucket}/up/a.txt", f"s3s:{bucket}/moved/a.txt")
    assert not (data_dir / bucket / "up" / "a.txt").exists()
    assert (data_dir / bucket / "moved" / "a.txt").read_bytes() == files["a.txt"]
    (src / "dir" / "b.bin").unlink()
    write_tree(src, {"new.txt": b"new"})
    rclone("sync", src, f"s3s:{bucket}/up")
    assert not (data_dir / bucket / "up" / "dir" / "b.bin").exists()
    assert (data_dir / bucket / "up" / "new.txt").read_bytes() == b"new"
    down = tmp_path / "down"
    rclone("copy", f"s3s:{bucket}/up", down)
    assert (down / "dir" / "sub" / "c with space+plus.txt").read_bytes() == b"c" * 10
    assert (down / "a.txt").read_bytes() == b"alpha\n"
    rclone("purge", f"s3s:{bucket}")
    assert not (data_dir / bucket).exists()


@upstream_cannot("rclone", "it reads s3serve's metadata on disk")
def test_rclone_multipart_upload_with_small_chunks(rclone, data_dir, tmp_path):
    bucket = unique_bucket_name("rclonemp")
    src = tmp_path / "big.bin"
    data = os.urandom(32 * 1024 * 1024 + 12345)
    src.write_bytes(data)
    rclone("mkdir", f"s3s:{bucket}")
    rclone("copy", "--s3-chunk-size", "5M", "--s3-upload-cutoff", "5M", src, f"s3s:{bucket}")
    assert (data_dir / bucket / "big.bin").read_bytes() == data
    # It went up in parts: the stored ETag is the multipart form, "-7" for 7 parts of 5 MiB.
    meta = os.getxattr(data_dir / bucket / "big.bin", "user.s3serve").decode()
    assert "etag-alg\tMULTIPART" in meta and "-7\n" in meta, meta
    # rclone checks multipart objects by size; an explicit download proves the bytes.
    rclone("copyto", f"s3s:{bucket}/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    rclone("check", "--download", src.parent, f"s3s:{bucket}", "--include", "big.bin")


@upstream_cannot("rclone", "rclone serve s3 makes no directories for folder markers")
def test_rclone_directory_markers(rclone, data_dir):
    """rclone --s3-directory-markers makes an empty folder as a marker, lists it, removes it."""
    bucket = unique_bucket_name("rclonedm")
    rclone("mkdir", f"s3s:{bucket}")
    rclone("mkdir", "--s3-directory-markers", f"s3s:{bucket}/empty/inner")
    assert (data_dir / bucket / "empty" / "inner").is_dir()
    assert rclone("lsf", "--dirs-only", f"s3s:{bucket}").stdout.split() == ["empty/"]
    assert rclone("lsf", "--dirs-only", f"s3s:{bucket}/empty").stdout.split() == ["inner/"]
    # rclone removes the markers of the empty folders below the path it is given.
    rclone("rmdirs", "--s3-directory-markers", "--leave-root", f"s3s:{bucket}/empty")
    assert not (data_dir / bucket / "empty").exists()
    assert rclone("lsf", f"s3s:{bucket}").stdout.split() == []
