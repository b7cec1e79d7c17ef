"""Finished videos of a bench run in the benchmarks' official output layouts, so their own evaluation scripts run on
them unchanged.

- RULER-Bench (``eval/eval.py`` reads ``{model_name}/{task_name}/{index}.mp4``): ``DEST/{task}/{index}.mp4``; pass
  ``DEST``'s parent as the script's video folder and ``DEST``'s name as ``--model_name``.
- VBVR-Bench (``VBVR-EvalKit``'s ``run_evaluation.py --model_path DEST`` and ``evaluate.py --videos_path DEST``):
  ``DEST/{split}/{task}/{sample}.mp4``, e.g. ``DEST/In-Domain_50/G-3_stable_sort_data-generator/00000.mp4``, the
  split, task and sample folder names exactly as in the downloaded ground-truth tree.

``vlmteach-fast bench`` writes these trees itself under ``OUT/official/{method}/`` after every run;
``vlmteach-fast bench-export`` (``export_official``) writes them anywhere, for any method of a run folder.

A judge scores a tree as one model: every video in it must come from one config. So a tree holds exactly the
current records of one config (the method's latest, ``summary.latest_configs``) and is replaced whole on every
export (``io_atomic.commit_dir``, without a manifest: the tree holds videos only): after a config edit and a
``--limit 2`` run it holds those 2 videos, not 2 new ones beside the old config's others. The videos of earlier
configs stay under ``OUT/instances/{method}-{hash}/``. A destination holding anything but ``.mp4`` files is not an
earlier export and is refused, never deleted.
"""

from __future__ import annotations

import os
import shutil

from ..io_atomic import OutputSetError, commit_dir
from .records import read_all_records
from .suites import check_path_component
from .summary import latest_configs

__all__ = ["LAYOUTS", "official_relpath", "export_official"]

LAYOUTS = ("auto", "ruler", "vbvr")


def _index(rec: dict) -> str:
    # records written before they carried "index": the id's last component is the index (task/index,
    # split/task/sample)
    return str(rec.get("index") or str(rec["instance_id"]).rsplit("/", 1)[-1])


def official_relpath(rec: dict, layout: str = "auto") -> str:
    """The video's path inside the official tree for one record ({"task", "index", "split", "instance_id"}).
    ``layout``: "ruler", "vbvr", or "auto" (VBVR when the record has a split, else RULER)."""
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = "vbvr" if rec.get("split") else "ruler"
    parts = [rec["task"], _index(rec) + ".mp4"]
    if layout == "vbvr":
        if not rec.get("split"):
            raise ValueError(f"record {rec['instance_id']!r} has no split: it is not from a VBVR-style suite")
        parts.insert(0, rec["split"])
    for p in parts:
        try:
            check_path_component(p, "a path component of the official tree")
        except ValueError as err:
            raise ValueError(f"record {rec['instance_id']!r}: {err}") from None
    return os.path.join(*parts)


def _place(src: str, dst: str, link: bool) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if link:
        try:
            os.link(src, dst)  # same file system: no copy, and the run's own video stays the source of truth
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _check_dest(dest: str) -> None:
    """``dest`` is absent or an earlier export (videos only); otherwise it is the user's, and replacing the tree would
    delete those files."""
    if not os.path.exists(dest):
        return
    if not os.path.isdir(dest):
        raise OutputSetError(f"official tree {dest!r} exists and is not a directory")
    other = [os.path.relpath(os.path.join(d, f), dest) for d, _, files in os.walk(dest) for f in files
             if not f.endswith(".mp4")]
    if other:
        raise OutputSetError(f"official tree {dest!r} holds files that are not videos ({', '.join(sorted(other)[:5])}"
                             f"{', ...' if len(other) > 5 else ''}); the export replaces the whole tree and would "
                             "delete them: choose an empty or new folder")


def export_official(run_dir, dest, method: str | None = None, layout: str = "auto", link: bool = False,
                    records: list[dict] | None = None) -> list[str]:
    """Put each finished instance's video of ``method`` (its latest config) at its official path under ``dest``.

    Args:
        run_dir: a ``bench`` output folder (records and ``instances/``).
        dest: folder of the official tree, replaced whole (absent, or holding only ``.mp4`` files of an earlier
            export; anything else raises ``OutputSetError`` before a file is written).
        method: which method's videos; None when the run holds a single method.
        layout: "auto" | "ruler" | "vbvr" (see ``official_relpath``).
        link: hard-link instead of copying where the file system allows.
        records: the run's records (default: read from ``run_dir``).

    Returns:
        The written paths. Raises ``ValueError`` when two records map to the same official path.
    """
    run_dir, dest = os.fspath(run_dir), os.fspath(dest)
    recs = latest_configs(read_all_records(run_dir) if records is None else records)
    methods = sorted({r["method"] for r in recs})
    if method is None:
        if len(methods) != 1:
            raise ValueError(f"{run_dir!r} holds methods {methods}: choose one with `method` (bench-export: "
                             f"--method {methods[0] if methods else 'NAME'})")
        method = methods[0]
    if method not in methods:
        raise ValueError(f"`method` {method!r} has no records in {run_dir!r} (found {methods})")
    chosen, seen = {}, {}
    for r in recs:
        if r["method"] != method or r["status"] != "ok" or not r.get("video"):
            continue
        rel = official_relpath(r, layout)
        if rel in seen:
            raise ValueError(f"records {seen[rel]!r} and {r['instance_id']!r} both map to {rel!r}")
        seen[rel] = r["instance_id"]
        chosen[rel] = os.path.join(run_dir, r["video"])
    for src in chosen.values():
        if not os.path.isfile(src):
            raise FileNotFoundError(f"video of a finished record is missing: {src!r}")
    _check_dest(dest)

    def write(tree):
        for rel, src in chosen.items():
            _place(src, os.path.join(tree, rel), link)

    commit_dir(write, dest, manifest=False)
    return [os.path.join(dest, rel) for rel in sorted(chosen)]
