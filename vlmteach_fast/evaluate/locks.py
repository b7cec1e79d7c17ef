"""One lock per benchmark instance, so that processes writing the same ``--out`` share the work instead of doing it
twice: the ranks of one ``accelerate launch`` (disjoint slices, never contending) and separate runs started by hand
or by a scheduler (they take whatever instance nobody holds and skip the rest, saying who holds it).

A lock is ``fcntl.flock`` on ``out/locks/<method>-<config hash>/<instance>.lock``, held while the instance runs and
until its record is written. The kernel drops it when the process dies (``kill -9`` included), so a crash never
leaves a stale lock; the file stays, holding the last holder's host, pid, rank and start time for the message.
``flock`` works on local file systems and on NFSv4 (Linux maps it to a POSIX lock there); where ``fcntl`` does not
exist (Windows) locking is skipped.
"""

from __future__ import annotations

import datetime
import json
import os
import socket

try:
    import fcntl
except ImportError:  # Windows: no cross-process locking here
    fcntl = None

__all__ = ["InstanceLock", "lock_path"]


def lock_path(out_dir, method: str, chash: str, name: str) -> str:
    return os.path.join(os.fspath(out_dir), "locks", f"{method}-{chash}", f"{name}.lock")


class InstanceLock:
    """``with InstanceLock(path, rank) as lock: if lock.acquired: ...``; ``lock.holder`` describes who holds it
    when it was not acquired."""

    def __init__(self, path, rank: int = 0):
        self.path, self.rank = os.fspath(path), rank
        self.acquired, self.holder, self._fd = False, None, None

    def __enter__(self) -> "InstanceLock":
        if fcntl is None:
            self.acquired = True
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder = _describe(_read(fd))
            os.close(fd)
            return self
        self._fd, self.acquired = fd, True
        info = {"host": socket.gethostname(), "pid": os.getpid(), "rank": self.rank,
                "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read(fd) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "another process (it has not written its name yet)"
    return f"pid {info.get('pid')} on {info.get('host')} (rank {info.get('rank')}, since {info.get('since')})"
