"""Atomic file and folder writes, written once for every writer in the package (videos, adapters, JSON, reports,
benchmark outputs, the light decoder's cache).

Everything is first written under a temporary name in the target's own folder (same filesystem, so ``os.replace``
is atomic), then moved into place. A crash, ``kill -9`` or Ctrl-C leaves either the old content or the whole new
content under the final name, never a half-written one; the temporary leftovers start with ``.tmp-``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_dir", "commit_dir"]


def _parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return parent


def _fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file path beside ``path`` (same extension, so writers that look at it still work); when the
    block ends without error the file is fsynced and moved to ``path`` (replacing it), else it is removed."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=_parent(path))
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return os.fspath(path)


def _json_default(o):
    if hasattr(o, "tolist"):  # tensors and numpy arrays
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_write_json(path, obj) -> str:
    """Write ``obj`` as indented JSON (tensors as lists, objects with ``to_dict`` as dicts) atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


@contextlib.contextmanager
def atomic_dir(directory):
    """Yield a fresh temporary folder beside ``directory``; when the block ends without error it replaces
    ``directory`` (an existing one is first moved aside, then deleted), else it is deleted and nothing changes."""
    directory = os.fspath(directory)
    parent = _parent(directory)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        yield tmp
        if os.path.isdir(directory):
            old = tempfile.mkdtemp(prefix=".tmp-old-", dir=parent)
            os.replace(directory, os.path.join(old, "x"))
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def commit_dir(write, directory) -> str:
    """Run ``write(tmp_dir)`` inside :func:`atomic_dir` (what a crashed earlier attempt left there is replaced).
    Returns ``directory``."""
    with atomic_dir(directory) as tmp:
        write(tmp)
    return os.fspath(directory)
