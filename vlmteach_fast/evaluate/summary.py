"""Benchmark summaries from records: per method, overall / per category / per task; markdown, CSV and PNG plots.

Columns: instances, failed, mean score (primary score of the suite, over finished instances), pass rate (over
finished instances that have a pass notion), mean seconds (the method's cost record: sampling, optimization and
teacher scoring, not the report's own judging and file writing), denoiser evaluations (forward + backward) and peak
memory (the cost record's: CUDA peak allocated, or the process's peak RSS on CPU) per instance, and the gain over
the baseline method: mean of (score - baseline score) over instances both finished (paired, so a method is not
credited for the instances it happened to finish).

Oracle references (``methods.REFERENCE_METHODS``: ``best_of_n_oracle``, Best-of-N picked by the benchmark's own
score) are not methods: their rows have kind "oracle" in the CSV, no gain, and a table of their own in summary.md,
beside the methods' tables, never in them.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import asdict, dataclass

from ..io_atomic import atomic_write_bytes
from .html import instances_html
from .provenance import describe, provenance_notes, scored_by
from .records import method_labels

__all__ = ["SummaryRow", "ORACLE_NOTE", "latest_configs", "row_kind", "shown_label", "summarize", "sanity_notes",
           "to_markdown", "to_csv", "plot_score_vs_seconds", "plot_categories", "write_reports"]


@dataclass
class SummaryRow:
    method: str
    level: str  # "all" | "split" | "category" | "task"
    group: str
    instances: int
    failed: int
    score_name: str | None
    mean_score: float | None
    pass_rate: float | None
    mean_seconds: float | None
    mean_denoiser_evals: float | None
    mean_peak_mib: float | None
    gain_over_baseline: float | None
    scored_by: str | None = None  # ``provenance.describe`` of the scorer(s) behind the scores; "MIXED: a | b"
    kind: str = "method"  # "method", "sanity" (made without a video model) or "oracle" (an upper reference, pass@k)


def latest_configs(records: list[dict]) -> list[dict]:
    """Only each method's most recent config (the hash of its last finished record): re-running a method with new
    settings (or after a library upgrade that changes ``OptimizeConfig``) supersedes the old records in the reports.
    The old records stay in the shards; pass all records to ``summarize`` to compare configs."""
    last: dict[str, tuple[str, str]] = {}
    for r in records:
        t = str(r.get("finished_at") or "")
        if r["method"] not in last or t >= last[r["method"]][0]:
            last[r["method"]] = (t, r["config_hash"])
    return [r for r in records if r["config_hash"] == last[r["method"]][1]]


def row_kind(method: str) -> str:
    """What a row of ``method`` is: "oracle" (``methods.REFERENCE_METHODS``: an upper reference that picked by the
    benchmark's score, never a competitor), "sanity" (``methods.SANITY_METHODS``) or "method"."""
    from ..methods import REFERENCE_METHODS, SANITY_METHODS

    return "oracle" if method in REFERENCE_METHODS else "sanity" if method in SANITY_METHODS else "method"


def shown_label(label: str, kind: str) -> str:
    """A method label as the plots and the HTML page show it; ``kind``: ``row_kind``'s. An oracle reference's says
    so."""
    return f"{label} (oracle, pass@k)" if kind == "oracle" else label


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _seconds(rec) -> float | None:
    """The method's own seconds (its cost record), else the instance's wall time (which adds scoring and writing)."""
    cost = rec.get("cost") or {}
    return cost.get("seconds", rec.get("seconds"))


def _peak_mib(rec) -> float | None:
    peak = (rec.get("cost") or {}).get("peak_memory_bytes")
    return None if peak is None else peak / 2**20


def _evals(rec) -> float | None:
    cost = rec.get("cost") or {}
    if "denoiser_forward" not in cost:
        return None
    return cost["denoiser_forward"] + cost.get("denoiser_backward", 0)


def _split_label(rec: dict) -> str:
    """The record's split for the per-split rows: VBVR's "In-Domain" / "Out-of-Domain" for its split folders, the
    folder name otherwise, "" (no row) for suites without splits."""
    from .vbvr import vbvr_domain

    split = rec.get("split") or ""
    return vbvr_domain(split) or split


def _scored_by(ok: list[dict]) -> str | None:
    lines = sorted({describe(scored_by(r)) for r in ok})
    return None if not lines else lines[0] if len(lines) == 1 else "MIXED: " + " | ".join(lines)


def summarize(records: list[dict], baseline: str = "baseline") -> list[SummaryRow]:
    """Summary rows for every method label x {all, each split (VBVR: In-Domain / Out-of-Domain), each category,
    each task}: VBVR's headline numbers (per split, per cognitive category) beside the per-task ones. ``records``:
    merged records (one per instance and method/config); ``baseline``: the label gains are measured against (None if
    absent)."""
    labels = method_labels(records)
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(labels[(r["method"], r["config_hash"])], []).append(r)
    # gains only between scores of the same kind (a judge's 0..100 minus a teacher's 0..1 means nothing)
    base = {r["instance_id"]: (r["score"], r["score_name"]) for r in by_label.get(baseline, []) if r["status"] == "ok"}
    rows = []
    for label in sorted(by_label):
        recs = by_label[label]
        kind = row_kind(recs[0]["method"])
        groups = [("all", "all", recs)]
        for level, key in (("split", _split_label), ("category", lambda r: r["category"]),
                           ("task", lambda r: r["task"])):
            for g in sorted({key(r) for r in recs} - {""}):
                groups.append((level, g, [r for r in recs if key(r) == g]))
        for level, g, rs in groups:
            ok = [r for r in rs if r["status"] == "ok"]
            names = Counter(r["score_name"] for r in ok)
            passes = [r["passed"] for r in ok if r["passed"] is not None]
            paired = [r["score"] - base[r["instance_id"]][0] for r in ok  # an oracle is no competitor: no gain
                      if label != baseline and kind != "oracle"
                      and base.get(r["instance_id"], (0, None))[1] == r["score_name"]]
            rows.append(SummaryRow(
                method=label, level=level, group=g, instances=len(rs), failed=len(rs) - len(ok),
                score_name=names.most_common(1)[0][0] if names else None,
                # failed records carry a score only where the benchmark scores a missing video (VBVR-Pro: 0)
                mean_score=_mean([r["score"] for r in rs if r["status"] == "ok" or r["score"] is not None]),
                pass_rate=sum(passes) / len(passes) if passes else None,
                mean_seconds=_mean([_seconds(r) for r in ok]),
                mean_denoiser_evals=_mean([_evals(r) for r in ok]),
                mean_peak_mib=_mean([_peak_mib(r) for r in ok]),
                gain_over_baseline=_mean(paired) if paired else None, scored_by=_scored_by(ok), kind=kind))
    return rows


def _paired(records: list[dict], label: str, ref: str, labels: dict) -> tuple[float, float, int, str] | None:
    """(mean of ``label``, mean of ``ref``, instances, score name) over the instances both finished with the same
    kind of score; None when there are none."""
    by = {}
    for r in records:
        if r["status"] == "ok" and r["score"] is not None:
            by.setdefault(labels[(r["method"], r["config_hash"])], {})[r["instance_id"]] = r
    a, b = by.get(label, {}), by.get(ref, {})
    both = [i for i in a if i in b and a[i]["score_name"] == b[i]["score_name"]]
    if not both:
        return None
    n = len(both)
    return (sum(a[i]["score"] for i in both) / n, sum(b[i]["score"] for i in both) / n, n,
            Counter(a[i]["score_name"] for i in both).most_common(1)[0][0])


def sanity_notes(records: list[dict]) -> list[tuple[bool, str]]:
    """What the sanity rows (``methods.SANITY_METHODS``) say about the other methods' scores, in words: one
    (warning, sentence) per method, paired over the instances both finished. A method whose mean does not exceed
    ``static``'s (the first frame held: a video in which nothing happens) is a warning: on this scorer its videos
    are not shown to do anything. ``ground_truth`` and ``end_state`` give the scorer's ceiling and what a cut to the
    answer earns. Without a ``static`` row, one sentence saying how to add it."""
    labels = method_labels(records)
    sanity = {labels[k]: k[0] for k in labels if row_kind(k[0]) == "sanity"}
    real = sorted({v for k, v in labels.items() if row_kind(k[0]) == "method"})
    statics = [lab for lab, m in sanity.items() if m == "static"]
    if not statics:
        return [(False, "No `static` row: run `vlmteach-fast bench --method static` into the same --out to see "
                        "what this scorer gives a video in which nothing happens.")] if real else []
    static, notes = statics[0], []
    for label in real:
        pair = _paired(records, label, static, labels)
        if pair is None:
            continue
        m, s, n, name = pair
        if m <= s:
            notes.append((True, f"**{label} does not beat `static`** on {name}: {m:.3f} against {s:.3f} over {n} "
                                "instances both finished. Holding the first frame scores at least as well: on this "
                                "scorer its videos are not shown to solve anything."))
        else:
            notes.append((False, f"{label} beats `static` on {name} by {m - s:+.3f} ({m:.3f} against {s:.3f}, {n} "
                                 "instances both finished)."))
    for label in sorted(lab for lab, meth in sanity.items() if meth != "static"):
        pair = _paired(records, label, static, labels)
        if pair is not None:
            m, s, n, name = pair
            what = "the benchmark's own answer" if sanity[label] == "ground_truth" else "a cut to the answer"
            notes.append((False, f"`{label}` ({what}) scores {m:.3f} on {name} against `static`'s {s:.3f} ({n} "
                                 "instances)."))
    return notes


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


ORACLE_NOTE = ("An oracle row is not a method: it picks among Best-of-N's N candidates by the benchmark's own score, "
               "which no method sees, so it is an upper reference (pass@k: what a perfect picker gets from those N "
               "samples), not a competitor. Gains are not computed for it.")


def _table(rows: list[SummaryRow], group: str, cells=lambda r: (r.method, r.group)) -> list[str]:
    """Markdown table lines; ``cells(row)``: its first two cells (method, group)."""
    out = [f"| method | {group} | n | failed | score | mean score | pass rate | s / instance | denoiser evals "
           "| peak MiB | gain vs baseline |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {' | '.join(cells(r))} | {r.instances} | {r.failed} | {r.score_name or '-'} | "
                   f"{_fmt(r.mean_score)} | {_fmt(r.pass_rate, pct=True)} | {_fmt(r.mean_seconds)} | "
                   f"{_fmt(r.mean_denoiser_evals)} | {_fmt(r.mean_peak_mib)} | {_fmt(r.gain_over_baseline)} |")
    return out


def to_markdown(rows: list[SummaryRow], title: str = "Benchmark summary", notes=(), provenance=()) -> str:
    """One table per level (all, split, category, task) of methods and sanity rows; ``provenance``
    (``provenance_notes``: who scored, who picked) before them, ``notes`` (``sanity_notes``) after the overall table,
    and oracle references (kind "oracle") in a block of their own after those, labelled as such."""
    out = [f"# {title}\n"]
    if provenance:
        out += ["\n## Provenance\n"] + [f"- {text}" for _, text in provenance]
    for level in ("all", "split", "category", "task"):
        rs = [r for r in rows if r.level == level and r.kind != "oracle"]
        if not rs:
            continue
        out += [f"\n## {'Overall' if level == 'all' else 'Per ' + level}\n"]
        out += _table(sorted(rs, key=lambda r: (r.group, r.method)), level)
        if level == "all" and notes:
            out += ["\n## Sanity rows\n", "`static`, `end_state` and `ground_truth` are made without a video model "
                    "(the first frame held; a cut to the ground-truth final frame; the ground-truth video).\n"]
            out += [f"- {text}" for _, text in notes]
    oracle = [r for r in rows if r.kind == "oracle"]
    if oracle:
        levels = ("all", "split", "category", "task")
        out += ["\n## References: oracle upper bounds (pass@k), not methods\n", ORACLE_NOTE + "\n"]
        out += _table(sorted(oracle, key=lambda r: (levels.index(r.level), r.group, r.method)), "level: group",
                      lambda r: (f"{r.method} (oracle, pass@k)", f"{r.level}: {r.group}"))
    return "\n".join(out) + "\n"


def to_csv(rows: list[SummaryRow]) -> str:
    buf = io.StringIO()
    fields = list(SummaryRow.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    return buf.getvalue()


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_score_vs_seconds(records: list[dict]) -> bytes:
    """PNG: each finished instance as a dot (seconds, score), one colour per method, method means as large markers."""
    plt = _plt()
    labels = method_labels(records)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for i, label in enumerate(sorted(set(labels.values()))):
        rs = [r for r in records if labels[(r["method"], r["config_hash"])] == label and r["status"] == "ok"]
        if not rs:
            continue
        xs, ys = [_seconds(r) for r in rs], [r["score"] for r in rs]
        c = f"C{i}"
        ax.scatter(xs, ys, s=12, alpha=0.4, color=c)
        ax.scatter([sum(xs) / len(xs)], [sum(ys) / len(ys)], s=120, marker="*", color=c,
                   label=shown_label(label, row_kind(rs[0]["method"])),
                   edgecolors="black")
    names = Counter(r["score_name"] for r in records if r["status"] == "ok")
    ax.set_xlabel("seconds per instance")
    ax.set_ylabel(f"score ({names.most_common(1)[0][0] if names else '-'})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # none when every instance failed: no empty legend, no warning
        ax.legend(fontsize=8)
    return _png(fig)


def plot_categories(rows: list[SummaryRow]) -> bytes:
    """PNG: mean score per category, one bar per method."""
    plt = _plt()
    rs = [r for r in rows if r.level == "category"]
    cats = sorted({r.group for r in rs})
    methods = sorted({r.method for r in rs})
    kinds = {r.method: r.kind for r in rs}
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(cats) * max(1, len(methods)) / 2), 4.0), dpi=100)
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        vals = {r.group: r.mean_score for r in rs if r.method == m}
        ax.bar([c + i * width for c in range(len(cats))], [vals.get(c) or 0.0 for c in cats], width,
               label=shown_label(m, kinds[m]))
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cats))])
    ax.set_xticklabels(cats, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean score")
    ax.grid(alpha=0.3, axis="y")
    if methods:
        ax.legend(fontsize=8)
    return _png(fig)


def write_reports(out_dir, records: list[dict], items=None, suite_errors=(), title: str = "Benchmark summary",
                  baseline: str = "baseline") -> dict:
    """summary.md, summary.csv, score_vs_seconds.png, categories.png and index.html in ``out_dir`` (each written
    atomically). ``items``: suite items (instance order and prompts for the HTML page). Returns {name: path}."""

    out_dir = os.fspath(out_dir)
    rows = summarize(records, baseline)
    md = to_markdown(rows, title, sanity_notes(records), provenance_notes(records, method_labels(records)))
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        md += "\n## Failed instances\n\n" + "".join(f"- {r['method']} {r['instance_id']}: {r['error']}\n"
                                                   for r in failed)
    if suite_errors:
        md += "\n## Suite entries that could not be used\n\n" + "".join(f"- {e}\n" for e in suite_errors)
    paths = {
        "summary.md": atomic_write_bytes(os.path.join(out_dir, "summary.md"), md.encode()),
        "summary.csv": atomic_write_bytes(os.path.join(out_dir, "summary.csv"), to_csv(rows).encode()),
        "score_vs_seconds.png": atomic_write_bytes(os.path.join(out_dir, "score_vs_seconds.png"),
                                                   plot_score_vs_seconds(records)),
        "categories.png": atomic_write_bytes(os.path.join(out_dir, "categories.png"), plot_categories(rows)),
        "index.html": atomic_write_bytes(os.path.join(out_dir, "index.html"),
                                         instances_html(records, items, title).encode()),
    }
    return paths
