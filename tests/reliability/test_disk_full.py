"""Disk full part-way through `generate`: a clear message, no partial file, and a rerun completes."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.data.io import read_label
from autolabel.errors import EXIT_USER_ERROR
from autolabel.labelset import confidence

from .helpers import assert_verified, generate_args, labelset_state, run_cli, temp_leftovers


def assert_no_partial_files(out: Path) -> None:
    """No temporary file survives, and every label PNG that exists decodes completely."""
    assert temp_leftovers(out) == []
    for png in (out / "labels").rglob("*.png"):
        read_label(png)


# ---------------------------------------------------------------------------------------------------------
# a real, tiny filesystem


@pytest.fixture
def tiny_fs(tmp_path):
    """A 160 KiB tmpfs (a full run needs a few hundred KiB); skipped where mounting is not allowed."""
    mount = tmp_path / "tiny_fs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_enospc_on_a_real_tiny_filesystem(tiny_fs, teacher, city, reference):
    out = tiny_fs / "out"
    full = run_cli(*generate_args(teacher, city, out), code=EXIT_USER_ERROR)
    assert "No space left on device" in full.stderr and str(out) in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    assert_no_partial_files(out)
    # space is freed: the same command finishes the job, with exactly the uninterrupted run's result
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_fs)], check=True)
    rerun = CliRunner().invoke(main, generate_args(teacher, city, out))
    assert rerun.exit_code == 0, rerun.output
    assert_verified(out)
    assert temp_leftovers(out) == []
    assert labelset_state(out) == reference


# ---------------------------------------------------------------------------------------------------------
# an injected failure (runs anywhere)


class DiskQuota:
    """File writes succeed until ``budget`` bytes are used, then fail with ENOSPC part-way through a write
    (the first part of that write lands on disk, as on a real filesystem)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.failures = 0

    def wrap(self, fh):
        quota = self
        real_write = fh.write

        def write(data):
            if len(data) > quota.budget:
                real_write(bytes(data[: quota.budget]))
                quota.budget = 0
                quota.failures += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            quota.budget -= len(data)
            return real_write(data)

        fh.write = write
        return fh


@pytest.fixture
def quota(monkeypatch):
    """Every file the label writers open counts against one quota (atomic_write_bytes uses ``os.fdopen``,
    the confidence store ``open``)."""
    quota = DiskQuota(budget=12_000)
    real_fdopen, real_open = os.fdopen, builtins.open

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        return quota.wrap(fh) if "w" in mode else fh

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return quota.wrap(fh) if "w" in mode else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(confidence, "open", open_, raising=False)
    return quota


def test_enospc_injected_in_the_writers(quota, teacher, city, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, generate_args(teacher, city, out))
    assert quota.failures >= 1
    assert result.exit_code == EXIT_USER_ERROR, (result.output, result.exception)
    assert "No space left on device" in result.output and str(out) in result.output, result.output
    assert_no_partial_files(out)
    monkeypatch.undo()  # space freed
    rerun = CliRunner().invoke(main, generate_args(teacher, city, out))
    assert rerun.exit_code == 0, rerun.output
    assert_verified(out)
    assert labelset_state(out) == reference
