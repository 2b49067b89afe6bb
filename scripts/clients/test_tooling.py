"""The test command's own tools: a clone alone can get the reference rclone.

scripts/rclone-ref is run from a copy of the scripts folder in an empty directory, so that
nothing beside the clone (no ../shared) can help it.
"""

import os
import shutil
import subprocess

from conftest import REPO

REFERENCE = os.environ.get("RCLONE_BIN") or str(REPO / ".tools" / "rclone")


def lone_clone(tmp_path):
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "rclone-ref", clone / "scripts" / "rclone-ref")
    return clone


def run_ref(clone, path_dirs, **env):
    base = {"PATH": os.pathsep.join([str(p) for p in path_dirs] + ["/usr/bin", "/bin"]),
            "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run([str(clone / "scripts" / "rclone-ref")], env={**base, **env},
                          capture_output=True, text=True, timeout=600)


def fake_rclone(directory, version):
    directory.mkdir(exist_ok=True)
    exe = directory / "rclone"
    exe.write_text(f"#!/bin/sh\necho 'rclone {version}'\n")
    exe.chmod(0o755)
    return exe


def test_reference_rclone_from_path_and_rclone_bin(tmp_path):
    clone = lone_clone(tmp_path)
    good = tmp_path / "good"
    good.mkdir()
    (good / "rclone").symlink_to(REFERENCE)
    p = run_ref(clone, [good])
    assert p.returncode == 0 and p.stdout.strip() == str(good / "rclone"), p
    p = run_ref(clone, [], RCLONE_BIN=str(good / "rclone"))
    assert p.returncode == 0 and p.stdout.strip() == str(good / "rclone"), p
    # RCLONE_BIN of another version is refused with a message, not used.
    old = fake_rclone(tmp_path / "old", "v1.60.0")
    p = run_ref(clone, [good], RCLONE_BIN=str(old))
    assert p.returncode == 1 and "not an rclone v1.75.2" in p.stderr, p


def test_reference_rclone_is_installed_into_the_clone(tmp_path):
    clone = lone_clone(tmp_path)
    # Another version on PATH is passed over; the install lands in the clone's .tools.
    old = fake_rclone(tmp_path / "old", "v1.60.0")
    p = run_ref(clone, [old.parent])
    assert p.returncode == 0, p
    installed = clone / ".tools" / "rclone"
    assert p.stdout.strip() == str(installed)
    out = subprocess.run([str(installed), "version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("rclone v1.75.2")
    # A second run finds it without installing again.
    p = run_ref(clone, [old.parent])
    assert p.returncode == 0 and p.stdout.strip() == str(installed) and "installing" not in p.stderr
