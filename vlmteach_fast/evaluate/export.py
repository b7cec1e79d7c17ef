"""Finished videos of a bench run in the benchmarks' official output layouts, so their own evaluation scripts run on
them unchanged.

- RULER-Bench (``eval/eval.py`` reads ``{model_name}/{task_name}/{index}.mp4``): ``DEST/{task}/{index}.mp4``; pass
  ``DEST``'s parent as the script's video folder and ``DEST``'s name as ``--model_name``.
- VBVR-Bench (``VBVR-EvalKit``'s ``run_evaluation.py --model_path DEST`` and ``evaluate.py --videos_path DEST``):
  ``DEST/{split}/{task}/{sample}.mp4``, e.g. ``DEST/In-Domain_50/G-3_stable_sort_data-generator/00000.mp4``, the
  split, task and sample folder names exactly as in the downloaded ground-truth tree.

``vlmteach-fast bench`` writes these trees itself under ``OUT/official/{method}/`` after every run;
``vlmteach-fast bench-export`` (``export_official``) writes them anywhere, for any method of a run folder.
"""

from __future__ import annotations

import os
import shutil

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
    tmp = dst + ".tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    if link:
        try:
            os.link(src, tmp)  # same file system: no copy, and the run's own video stays the source of truth
        except OSError:
            shutil.copyfile(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def export_official(run_dir, dest, method: str | None = None, layout: str = "auto", link: bool = False,
                    records: list[dict] | None = None) -> list[str]:
    """Put each finished instance's video of ``method`` (its latest config) at its official path under ``dest``.

    Args:
        run_dir: a ``bench`` output folder (records and ``instances/``).
        dest: folder of the official tree (created; files already there are replaced, others left alone).
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
            raise ValueError(f"{run_dir!r} holds methods {methods}: choose one with `method`")
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
    written = []
    for rel, src in sorted(chosen.items()):
        if not os.path.isfile(src):
            raise FileNotFoundError(f"video of a finished record is missing: {src!r}")
        dst = os.path.join(dest, rel)
        _place(src, dst, link)
        written.append(dst)
    return written
