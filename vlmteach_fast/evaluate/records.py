"""The durable part of a benchmark run: one JSON line per finished instance, appended with flush + fsync.

Why this is crash-safe:
- an instance's outputs are written to a temporary folder and renamed into place (``commit_dir``) *before* its
  record is appended, so a record always points at complete files;
- a record is one ``os.write`` of one line followed by ``fsync``; a ``kill -9`` can at worst leave a torn last line
  (no trailing newline), which ``RecordWriter`` cuts off when it reopens the file and ``read_records`` ignores;
- an instance counts as done when a record with its (instance id, method, config hash) exists and its ``item_key``
  and ``models_key`` still match the suite item and the models' files (``fingerprint.py``), so a re-run skips it and
  redoes only the unfinished or stale ones; duplicates (possible only if two runs overlap) are collapsed, last one wins.

Layout of ``out/``: ``shards/records-rank{R}.jsonl`` (one per process; the durable source), ``records.jsonl`` (merged
by the main process, sorted by suite order: derived, rewritten atomically after every run).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import warnings

from ..io_atomic import atomic_write_bytes, to_json_text

__all__ = ["RECORD_KEYS", "READ_KEYS", "method_labels", "config_hash", "record_key", "RecordWriter", "read_records", "read_all_records",
           "shard_path", "merge_records"]

# Every record has these keys (values may be None): see runner.run_item for their meaning.
RECORD_KEYS = ("instance_id", "task", "category", "split", "method", "config_hash", "status", "error", "score",
               "score_name", "passed", "scores", "teacher_p_yes", "stop_reason", "seconds", "cost", "video",
               "adapter", "rank", "finished_at", "item_key", "models_key", "provenance")


# What a reader needs of a record: which instance, method and config it is for and whether it finished. A line
# without them (hand-edited, or from another tool) is skipped like a torn one instead of stopping resume and reports.
READ_KEYS = ("instance_id", "method", "config_hash", "status")


def config_hash(obj) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys): same settings, same hash."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_key(rec: dict) -> tuple:
    return rec["instance_id"], rec["method"], rec["config_hash"]


def shard_path(out_dir, rank: int) -> str:
    return os.path.join(os.fspath(out_dir), "shards", f"records-rank{rank}.jsonl")


class RecordWriter:
    """Appends records to one JSONL file, each one flushed and fsynced before ``append`` returns."""

    def __init__(self, path):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._drop_torn_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)  # & ~umask

    def _drop_torn_tail(self):
        """A kill during a previous ``append`` can leave a last line without its newline: cut it off, so the next
        record starts on its own line (only the writer of this file does this; readers just skip such a line)."""
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            warnings.warn(f"{self.path}: dropping a torn last line ({len(data) - keep} bytes) left by a killed run")
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict) -> None:
        missing = [k for k in RECORD_KEYS if k not in record]
        if missing:
            raise ValueError(f"record is missing key(s) {missing}")
        line = (to_json_text(record, sort_keys=True, default=str) + "\n").encode()
        # one write call for the whole line: O_APPEND makes it land after everything else in the file
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        os.fsync(self._fd)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_records(path) -> list[dict]:
    """Records of one JSONL file; a torn or unparsable line, or one without a key of ``READ_KEYS``, is skipped with a
    warning naming file and line (its instance counts as not done, so a resume redoes it)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict):
                warnings.warn(f"{path}:{lineno}: skipping a record that is not a complete JSON object")
                continue
            missing = [k for k in READ_KEYS if k not in rec]
            if missing:
                warnings.warn(f"{path}:{lineno}: skipping a record without key(s) {missing}")
                continue
            out.append(rec)
    return out


def read_all_records(out_dir) -> list[dict]:
    """Every record of every shard of ``out_dir`` (any number of processes, any earlier run), de-duplicated by
    (instance id, method, config hash): the one finished last wins."""
    best = {}
    for path in sorted(glob.glob(os.path.join(os.fspath(out_dir), "shards", "*.jsonl"))):
        for rec in read_records(path):
            key = record_key(rec)
            if key not in best or str(rec.get("finished_at", "")) >= str(best[key].get("finished_at", "")):
                best[key] = rec
    return list(best.values())


def merge_records(out_dir, order: list[str] | None = None) -> str:
    """Write ``out_dir/records.jsonl`` (atomically): all shards' records, de-duplicated, sorted by ``order`` (instance
    ids in suite order; others last), then method. Returns the path."""
    rank = {iid: i for i, iid in enumerate(order or [])}
    recs = sorted(read_all_records(out_dir),
                  key=lambda r: (rank.get(r["instance_id"], len(rank)), str(r["instance_id"]), r["method"],
                                 r["config_hash"]))
    text = "".join(to_json_text(r, sort_keys=True, default=str) + "\n" for r in recs)
    return atomic_write_bytes(os.path.join(os.fspath(out_dir), "records.jsonl"), text.encode())


def method_labels(records: list[dict]) -> dict[tuple, str]:
    """{(method, config hash): label}: the method's name, or ``method@hash`` when a method ran with several configs."""
    hashes: dict[str, set] = {}
    for r in records:
        hashes.setdefault(r["method"], set()).add(r["config_hash"])
    return {(m, h): (m if len(hs) == 1 else f"{m}@{h}") for m, hs in hashes.items() for h in hs}
