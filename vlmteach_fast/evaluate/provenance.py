"""Who made a score: the scorer (name, mode, package version, source commit), the checklist judge (model, prompt
hash) and vlmteach_fast's version, stored in every record a run writes (``record["provenance"]``).

A score means little without its scorer: VBVR-EvalKit's evaluators changed after the VBVR paper, and its two entry
points (``vbvr`` rule-only, ``vbvr:weighted``) give the same video different scores. The reports list the scorers
behind their rows, and when records scored by different scorers would share a table (a rerun into the same
``--out`` after upgrading the scorer, or methods run at different times) they say so in words instead of averaging
them silently (``provenance_notes``). Those records are kept, not rerun: the report marks them.

The commit of a package is read from its pip install record (``direct_url.json``: ``vcs_info.commit_id`` for a
``pip install git+URL``; the git checkout behind a ``pip install -e`` of a clone) or, for a module imported from a
checkout on ``sys.path``, from the git repository that tracks its file. None when neither says.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys

__all__ = ["source_provenance", "run_provenance", "scored_by", "describe", "provenance_notes"]


def _git_commit(path: str) -> str | None:
    """HEAD of the git repository that tracks ``path`` (a file or folder); None when git or such a repository is
    missing. A file that git does not track (a venv's site-packages inside some checkout) has no commit."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        tracked = subprocess.run(["git", "-C", folder, "ls-files", "--error-unmatch", os.path.abspath(path)],
                                 capture_output=True, timeout=10)
        if tracked.returncode != 0:
            return None
        head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None if head.returncode == 0 else None


def _distribution(module_name: str):
    top = module_name.split(".")[0]
    names = md.packages_distributions().get(top) or []
    for name in names:
        try:
            return md.distribution(name)
        except md.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=None)
def source_provenance(module_name: str) -> dict:
    """{"package", "version", "commit"} of the code of an imported module (values None where unreadable)."""
    module = sys.modules.get(module_name) or __import__(module_name, fromlist=["_"])
    file = getattr(module, "__file__", None)
    dist = _distribution(module_name)
    out = {"package": module_name.split(".")[0], "version": getattr(module, "__version__", None), "commit": None}
    if dist is not None:
        out.update(package=dist.metadata["Name"], version=dist.version)
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "null") or {}
        except ValueError:
            direct = {}
        out["commit"] = (direct.get("vcs_info") or {}).get("commit_id")
    if out["commit"] is None and file:
        out["commit"] = _git_commit(file)
    return out


def _prompt_hash(judge) -> str | None:
    text = getattr(judge, "prompt_text", None)
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:12]


def run_provenance(scorer=None, scorer_spec: str | None = None, judge=None, judge_spec: str | None = None,
                   selector: dict | None = None) -> dict:
    """What a run's records store: {"vlmteach_fast", "scorer", "judge", "selector"}. ``scorer``: the
    ``BenchConfig.scorer`` (one with a ``provenance()`` method describes itself, e.g. ``VBVRScorer``; any other callable is named by
    ``scorer_spec`` and described by its module's package); ``judge``: the loaded checklist judge (its
    ``prompt_text``, if it has one, is hashed); ``judge_spec``: how it was named (``--judge``); ``selector``: who
    picks among Best-of-N's candidates, {"name": "teacher" | "judge" | "oracle", "model": its spec} (None: the
    method picks nothing)."""
    scorer_part = None
    if scorer is not None:
        if hasattr(scorer, "provenance"):
            scorer_part = dict(scorer.provenance())
        else:
            module = getattr(scorer, "__module__", None) or type(scorer).__module__
            scorer_part = {"name": scorer_spec or getattr(scorer, "__qualname__", type(scorer).__qualname__),
                           "mode": None, **source_provenance(module)}
    judge_part = None
    if judge is not None:
        judge_part = {"name": getattr(judge, "name", type(judge).__name__), "model": judge_spec,
                      "prompt_hash": _prompt_hash(judge)}
    return {"vlmteach_fast": source_provenance("vlmteach_fast"), "scorer": scorer_part, "judge": judge_part,
            "selector": None if selector is None else dict(selector)}


def scored_by(rec: dict):
    """The part of ``rec``'s provenance behind its primary score: the scorer's (score "scorer"), the judge's
    ("checklist"), else vlmteach_fast's own version (its rule, final-frame and teacher scores). "unrecorded" for a
    record written before provenance was stored."""
    prov = rec.get("provenance")
    if not isinstance(prov, dict):
        return "unrecorded"
    if rec.get("score_name") == "scorer":
        return prov.get("scorer")
    if rec.get("score_name") == "checklist":
        return prov.get("judge")
    return {"name": f"vlmteach_fast {rec.get('score_name')}",
            "version": (prov.get("vlmteach_fast") or {}).get("version")}


def describe(part) -> str:
    """One line for a ``scored_by`` value."""
    if not isinstance(part, dict):
        return "provenance not recorded (an older version wrote these records)" if part == "unrecorded" else "-"
    bits = [str(part.get("name"))]
    if part.get("mode"):
        bits.append(f"mode {part['mode']}")
    if part.get("package") and part.get("package") != part.get("name"):
        bits.append(f"package {part['package']}")
    for key in ("version", "commit", "model", "prompt_hash"):
        if part.get(key):
            bits.append(f"{key.replace('_', ' ')} {part[key]}")
    return ", ".join(bits)


def provenance_notes(records: list[dict], labels: dict) -> list[tuple[bool, str]]:
    """(warning, sentence) lines for a report: what scored each method, vlmteach_fast's version(s), and a warning
    for each kind of score whose records were made by more than one scorer (they share the report's tables, so
    their means and gains would mix scorers). ``labels``: ``records.method_labels(records)``."""
    ok = [r for r in records if r.get("status") == "ok"]
    by: dict[str, dict[str, dict[str, int]]] = {}  # score name -> scorer line -> method label -> instances
    for r in ok:
        line = describe(scored_by(r))
        methods = by.setdefault(str(r.get("score_name")), {}).setdefault(line, {})
        label = labels[(r["method"], r["config_hash"])]
        methods[label] = methods.get(label, 0) + 1
    notes = []
    for name in sorted(by):
        for line, methods in sorted(by[name].items()):
            notes.append((False, f"score `{name}` by {line}: {', '.join(sorted(methods))}"))
        if len(by[name]) > 1:
            parts = "; ".join(f"{line} ({', '.join(f'{m}: {n}' for m, n in sorted(methods.items()))} instances)"
                              for line, methods in sorted(by[name].items()))
            notes.append((True, f"**Scores `{name}` come from different scorers**: {parts}. They are not comparable: "
                                "rerun the older ones with one scorer (a fresh --out, or the same scorer version "
                                "and mode) before reading their means or gains side by side."))
    picks: dict[str, set] = {}  # method label -> who picked its videos among candidates
    for r in ok:
        sel = (r.get("provenance") or {}).get("selector") if isinstance(r.get("provenance"), dict) else None
        if isinstance(sel, dict):
            picks.setdefault(labels[(r["method"], r["config_hash"])], set()).add(describe(sel))
    for label in sorted(picks):
        notes.append((False, f"{label} picks its video among the candidates by: {' | '.join(sorted(picks[label]))}"))
    own = [(r.get("provenance") or {}).get("vlmteach_fast") or {} for r in ok if isinstance(r.get("provenance"), dict)]
    versions = sorted({describe({"name": "vlmteach_fast", "version": v.get("version"), "commit": v.get("commit")})
                       for v in own})
    notes += [(False, f"made with {v}") for v in versions]
    return notes
