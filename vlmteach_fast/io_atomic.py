"""Atomic file and folder writes, written once for every writer in the package (videos, adapters, JSON, reports,
benchmark outputs, the light decoder's cache). A crash, ``kill -9`` or Ctrl-C never leaves something half-written,
or a mix of two writes, where a reader looks.

- Single files (``atomic_path`` / ``atomic_write_bytes`` / ``atomic_write_json``): written under a temporary name
  in the target's own folder (same file system, so ``os.replace`` is atomic), fsynced, moved into place.
- Folders written as one set (``atomic_dir`` / ``commit_dir``: a method's video, adapter, history, plot and
  result.json; an adapter folder; a benchmark instance): every file is written into a fresh temporary folder beside
  the target, a ``manifest.json`` listing every file with its size and SHA-256 is added, and the folder is moved
  into place as a whole. On Linux the old and the new folder are swapped with one ``renameat2(RENAME_EXCHANGE)``
  call, so a reader sees the complete old set or the complete new one, never a mix and never nothing; elsewhere two
  renames, and a target that a kill left between them is completed by the next ``commit_dir`` or
  ``verify_output_set``. Files of an earlier write that the new set lacks are gone with it. A folder holding files
  the writer does not know (the user's) is never replaced (``known``).
- Temporary folders are named ``.tmp-<name>~<host>~<pid>~...``: leftovers of dead writers are removed, those of a
  live one (another process writing the same target) never are.
- ``verify_output_set`` checks a set against its manifest, so a corrupted adapter fails loudly instead of loading.
- Permissions follow the process umask (``tempfile`` creates 0600 files and 0700 folders, which a shared multi-node
  output folder cannot read).
- JSON is strict: non-finite floats (NaN, inf) are written as ``null`` (``json_safe``).
- ``storage_error`` tells a full, read-only or over-quota file system (every later write fails the same way, so a
  run stops instead of blaming each item) from an error of one write.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_dir", "commit_dir", "json_safe",
           "to_json_text", "follow_umask", "check_replaceable_dir", "verify_output_set", "OutputSetError", "MANIFEST",
           "storage_error"]

MANIFEST = "manifest.json"
# Errors of the file system rather than of one write: nothing written there succeeds until space is freed, the
# quota raised or the mount made writable.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def storage_error(err: BaseException) -> str | None:
    """``os.strerror`` of the storage errno (``STORAGE_ERRNOS``) behind ``err`` (itself, its causes and contexts, or a
    wrapped message that quotes it, as ffmpeg's and torch's writers do), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for code in STORAGE_ERRNOS:
            if (isinstance(err, OSError) and err.errno == code) or os.strerror(code) in str(err):
                return os.strerror(code)
        err = err.__cause__ or err.__context__
    return None


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def follow_umask(path, is_dir: bool | None = None) -> None:
    """chmod ``path`` to what ``open`` / ``mkdir`` would have given it under the current umask (0666 / 0777 & ~umask);
    for files and folders made by ``tempfile``, which uses 0600 / 0700 whatever the umask."""
    path = os.fspath(path)
    is_dir = os.path.isdir(path) if is_dir is None else is_dir
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, inf) replaced by None, tensors / arrays as lists and objects with
    ``to_dict`` as dicts: what strict JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (int, str, bytes)):  # tensors, numpy arrays and scalars
        return json_safe(obj.tolist())
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    return obj


def _json_default(o):
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def to_json_text(obj, default=None, **kw) -> str:
    """Strict JSON text of ``obj`` (``json_safe`` first; ``allow_nan=False`` proves nothing non-finite is left).
    ``default``: for any other object (default: TypeError)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=default or _json_default, **kw)


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
    block ends without error the file is fsynced, given the umask's permissions and moved to ``path`` (replacing
    it), else it is removed."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=_parent(path))
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        follow_umask(tmp, is_dir=False)
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


def atomic_write_json(path, obj) -> str:
    """Write ``obj`` as indented strict JSON (``to_json_text``: NaN as null, tensors as lists, ``to_dict`` objects
    as dicts) atomically. Returns the path."""
    return atomic_write_bytes(path, (to_json_text(obj, indent=2) + "\n").encode())


# ----- folders written as one set -----

class OutputSetError(ValueError):
    """An output folder does not match its manifest (missing, changed or unlisted files), or cannot be replaced."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _list_files(root: str) -> list[str]:
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/") for f in files]
    return sorted(out)


def _write_manifest(root: str) -> dict:
    files = {rel: {"bytes": os.path.getsize(os.path.join(root, rel)), "sha256": _sha256(os.path.join(root, rel))}
             for rel in _list_files(root) if rel != MANIFEST}
    manifest = {"format": 1, "files": files}
    atomic_write_json(os.path.join(root, MANIFEST), manifest)
    return manifest


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE). False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # old kernel or a file system without exchange: fall back to two renames
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) {a!r} <-> {b!r}: {os.strerror(err)}")


def _resolve(directory) -> str:
    """The absolute folder a set is written to: symlinks followed, so a link to a folder is written through (the
    link stays; swapping it with the temporary folder would replace the link and leave a ``.tmp-`` link behind)."""
    return os.path.realpath(os.fspath(directory))


def _tmp_names(final_dir: str):
    parent, name = os.path.split(os.path.abspath(final_dir))
    return parent, f".tmp-{name}~", f".old-{name}~"


def _owner_tag() -> str:
    """Who made a temporary folder: ``host~pid~``, so that only leftovers of dead processes are cleaned up (two
    processes writing the same target must not delete each other's folders in flight)."""
    return f"{socket.gethostname()}~{os.getpid()}~"


def _is_stale(entry: str) -> bool:
    """True for a temporary folder whose writer is dead (made on this host by a process that no longer exists).
    Folders of other hosts are left alone: their processes cannot be checked from here."""
    parts = entry.rsplit("~", 3)
    if len(parts) != 4 or parts[1] != socket.gethostname():
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _recover(final_dir: str) -> None:
    """Finish what a kill between the two renames of the fallback swap left: no ``final_dir``, but a complete new
    set (manifest verified) in a temporary folder of a dead writer beside it."""
    parent, tmp_prefix, _ = _tmp_names(final_dir)
    if not os.path.isdir(parent) or os.path.exists(final_dir):
        return
    for e in sorted(os.listdir(parent)):
        cand = os.path.join(parent, e)
        if e.startswith(tmp_prefix) and _is_stale(e) and os.path.isfile(os.path.join(cand, MANIFEST)):
            try:
                verify_output_set(cand, _recover_first=False)
            except OutputSetError:
                continue
            os.replace(cand, final_dir)
            return


def _remove_stale(final_dir: str) -> None:
    """Temporary folders of this target left by writers that died (never those of a live process)."""
    parent, tmp_prefix, old_prefix = _tmp_names(final_dir)
    for e in os.listdir(parent):
        if e.startswith((tmp_prefix, old_prefix)) and _is_stale(e):
            shutil.rmtree(os.path.join(parent, e), ignore_errors=True)


def check_replaceable_dir(final_dir, known=None, what: str = "output folder") -> None:
    """Raise ``OutputSetError`` when ``final_dir`` exists and is not ours to replace: not a folder, or, without a
    manifest, holding names outside ``known`` (the user's files; they are never deleted; ``known=None``: the caller
    owns the folder). Cheap: call it before any model loads."""
    final_dir = os.fspath(final_dir)
    if not os.path.exists(final_dir):
        return
    if not os.path.isdir(final_dir):
        raise OutputSetError(f"{what} {final_dir!r} exists and is not a directory")
    entries = set(os.listdir(final_dir))
    if known is None or MANIFEST in entries:
        return
    foreign = sorted(entries - set(known))
    if foreign:
        raise OutputSetError(f"{what} {final_dir!r} holds files that are not a vlmteach-fast output set "
                             f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); writing there would "
                             f"delete them: choose an empty or new folder")


@contextlib.contextmanager
def atomic_dir(directory, known=None, manifest: bool = True):
    """Yield a fresh temporary folder beside ``directory``; when the block ends without error its files get the
    umask's permissions, a ``manifest.json`` (every file, its size and SHA-256) is added and the folder replaces
    ``directory`` as a whole (see the module docstring); else it is deleted and nothing changes. A symlink to a
    folder is followed: the set is written into its target and the link stays. ``known``: see
    ``check_replaceable_dir`` (None: the caller owns ``directory``, whatever is there is replaced). ``manifest=False``:
    no manifest (a tree another tool reads, which must hold its own files only); a kill between the two renames of
    the fallback swap then leaves the new tree in a temporary folder, not completed by the next write."""
    final_dir = _resolve(directory)
    check_replaceable_dir(final_dir, known)
    parent, tmp_prefix, old_prefix = _tmp_names(final_dir)
    os.makedirs(parent, exist_ok=True)
    _recover(final_dir)
    tmp = tempfile.mkdtemp(prefix=tmp_prefix + _owner_tag(), dir=parent)
    try:
        yield tmp
        follow_umask(tmp, is_dir=True)
        for d, dirs, files in os.walk(tmp):  # writers that use tempfile (video export, savers) make 0600 files
            for name in dirs:
                follow_umask(os.path.join(d, name), is_dir=True)
            for name in files:
                follow_umask(os.path.join(d, name), is_dir=False)
        if manifest:
            _write_manifest(tmp)
        if not os.path.isdir(final_dir):
            os.replace(tmp, final_dir)
        elif _exchange(tmp, final_dir):
            shutil.rmtree(tmp, ignore_errors=True)  # now holds the old set
        else:
            old = tempfile.mkdtemp(prefix=old_prefix + _owner_tag(), dir=parent)
            os.replace(final_dir, os.path.join(old, "set"))
            os.replace(tmp, final_dir)  # a kill before this line is completed by _recover
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_stale(final_dir)  # what killed earlier writers of this target left


def commit_dir(write, directory, known=None, manifest: bool = True) -> str:
    """Run ``write(tmp_dir)`` inside :func:`atomic_dir`. Returns ``directory`` (absolute)."""
    with atomic_dir(directory, known, manifest) as tmp:
        write(tmp)
    return os.path.abspath(os.fspath(directory))


def verify_output_set(directory, _recover_first: bool = True) -> dict:
    """Check every file of an output set against its ``manifest.json``. Returns the manifest.

    Raises ``OutputSetError`` naming each missing, changed (size or SHA-256) or unlisted file, or a missing manifest.
    """
    directory = _resolve(directory)
    if _recover_first:
        _recover(directory)
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise OutputSetError(f"{directory!r} has no {MANIFEST}: not a complete output set")
    with open(path) as f:
        manifest = json.load(f)
    problems = []
    files = manifest.get("files", {})
    for rel, meta in sorted(files.items()):
        p = os.path.join(directory, rel)
        if not os.path.isfile(p):
            problems.append(f"{rel}: missing")
        elif os.path.getsize(p) != meta["bytes"]:
            problems.append(f"{rel}: {os.path.getsize(p)} bytes, manifest says {meta['bytes']}")
        elif _sha256(p) != meta["sha256"]:
            problems.append(f"{rel}: SHA-256 differs from the manifest (corrupted or changed)")
    problems += [f"{rel}: not in the manifest" for rel in _list_files(directory) if rel != MANIFEST and rel not in files]
    if problems:
        raise OutputSetError(f"output set {directory!r} does not match its manifest: " + "; ".join(problems))
    return manifest


