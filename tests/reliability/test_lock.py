"""One job per shard: a second `generate` on the same shard of one OUT exits 2 at once naming the holder, or
waits for it with --wait; other shards still run side by side (tests/reliability/test_concurrency.py).

Before: two jobs on the same shard both did all the work, and the second one's stale-temp cleaning could
remove files the first one was writing.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from autolabel import labelset
from autolabel.errors import EXIT_USER_ERROR
from autolabel.labelset.lock import shard_lock

from .helpers import folder_args, invoke, write_images


def test_a_second_job_on_a_held_shard_exits_2_naming_the_holder(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, ["a.png", "b.png"], seed=6)
    with shard_lock(out, "0/1"):  # as a running `generate` holds it (flock: another open file conflicts)
        start = time.monotonic()
        result = invoke(*folder_args(teacher, images, out), code=EXIT_USER_ERROR)
        assert time.monotonic() - start < 30  # at once, not after labelling
        assert f"pid {os.getpid()} on {socket.gethostname()}" in result.output
        assert "shard 0/1 is being labelled by another" in result.output and "--wait" in result.output
        assert not (out / labelset.LABELS_DIR).exists()
        # another shard of the same OUT is free
        invoke(*folder_args(teacher, images, out, "--shard", "0/2"))
        by_other = labelset.read_manifest(out).num_rows
    # once released, the shard runs (and takes over what the other shard's job did)
    result = invoke(*folder_args(teacher, images, out))
    assert f"{2 - by_other} labelled, {by_other} already done" in result.output


def test_wait_starts_once_the_holder_is_done(tmp_path, teacher):
    images, out = tmp_path / "images", tmp_path / "out"
    write_images(images, ["a.png", "b.png"], seed=7)
    released = threading.Event()

    def hold() -> None:
        with shard_lock(out, "0/1"):
            time.sleep(1.5)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)  # the holder has the lock
    try:
        result = invoke(*folder_args(teacher, images, out, "--wait"))
        assert released.is_set()  # it really waited
        assert "2 labelled" in result.output
    finally:
        holder.join()
