"""One lock per shard of a label set: two ``generate`` jobs never work on the same shard of one OUT at once.

``OUT/.locks/shard-<I>-of-<N>.lock`` is locked with ``fcntl.flock`` (exclusive, held by the open file, so the
kernel releases it when its process dies, however it dies). The holder writes its pid, host and start time
into the file, so a second job can name it. Jobs on different shards take different locks and run side by
side. Lock files stay in place after use: removing one would let two jobs lock two different files of the same
name. ``flock`` works across machines on NFSv4 and most cluster filesystems (Lustre, GPFS mounted with
``flock``); on one without lock support the lock is taken anyway and warned about.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from autolabel.errors import LabelSetError, OutputError
from autolabel.labelset.journal import shard_tag

log = logging.getLogger(__name__)

LOCKS_DIR = ".locks"
POLL_SECONDS = 0.2  # --wait: how often the lock is tried again


class WaitStopped(LabelSetError):
    """``--wait`` was cut short (a signal) before the lock was free."""


def lock_path(out: Path, shard: str) -> Path:
    return Path(out) / LOCKS_DIR / f"shard-{shard_tag(shard)}.lock"


def holder(path: Path) -> str:
    """Who holds (or last held) a lock, as its file says."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "an unknown process"


def is_locked(out: Path, shard: str) -> bool:
    """Whether a live process holds the lock of ``shard`` (tried without blocking, released at once)."""
    path = lock_path(out, shard)
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


@contextmanager
def shard_lock(
    out: Path, shard: str, wait: bool = False, should_stop: Callable[[], bool] | None = None
) -> Iterator[Path]:
    """Hold the lock of ``shard`` in ``out`` (created if needed) for the ``with`` block.

    Another live holder: a :class:`LabelSetError` naming it, or with ``wait`` wait until it is released
    (polling, so that ``should_stop()`` turning true, e.g. on a signal, ends the wait with a
    :class:`LabelSetError` too).
    """
    path = lock_path(out, shard)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the shard lock ({exc.strerror or exc})") from None
    try:
        _acquire(fd, path, out, shard, wait, should_stop)
        stamp = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            log.warning("%s: the filesystem does not support locks; shard jobs are not protected", path)
            return True
        raise OutputError(f"{path}: cannot lock ({exc.strerror or exc})") from None


def _acquire(fd: int, path: Path, out: Path, shard: str, wait: bool, should_stop: Callable[[], bool] | None) -> None:
    if _try_lock(fd, path):
        return
    who = holder(path)
    if not wait:
        raise LabelSetError(
            f"{out}: shard {shard} is being labelled by another `autolabel generate` ({who}; lock {path}); "
            "wait for it to finish, or pass --wait to start once it has"
        )
    log.warning("shard %s of %s is held by %s; waiting for it (--wait)", shard, out, who)
    while not _try_lock(fd, path):
        if should_stop is not None and should_stop():
            raise WaitStopped(f"{out}: stopped while waiting for shard {shard} ({who})")
        time.sleep(POLL_SECONDS)
