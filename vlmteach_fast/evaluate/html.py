"""One static HTML page: a row per instance, a column per method, each cell the instance's video (relative path, so
the output folder can be copied or served as is) with its score, pass mark, seconds, or the error."""

from __future__ import annotations

import html
import os
from urllib.parse import quote

from .records import method_labels

__all__ = ["instances_html"]

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px; vertical-align: top; font-size: 12px; }
td.err { background: #fdd; max-width: 240px; }
video, img.vid { width: 192px; image-rendering: pixelated; }
.pass { color: #080; font-weight: bold; } .fail { color: #a00; }
"""


AUTOPLAY_MAX_ROWS = 100  # beyond this many instances, autoplaying every video stalls a browser: play on click


def _cell(rec: dict | None, autoplay: bool = True) -> str:
    if rec is None:
        return "<td>not run</td>"
    if rec["status"] != "ok":
        return f'<td class="err">failed: {html.escape(str(rec["error"]))}</td>'
    # a relative URL: item folders are percent-encoded ids ("maze%2F0"), so "%" itself must be escaped ("%25")
    video = html.escape(quote(os.path.normpath(rec["video"]).replace(os.sep, "/")) if rec["video"] else "")
    gif = video[: -len(".mp4")] + ".gif" if video.endswith(".mp4") else video
    mark = "" if rec["passed"] is None else ('<span class="pass">pass</span>' if rec["passed"]
                                             else '<span class="fail">fail</span>')
    score = "-" if rec["score"] is None else f"{rec['score']:.3f}"
    # MP4 (H.264) plays in every browser; the GIF is the fallback for viewers without H.264
    play = "autoplay" if autoplay else 'preload="metadata"'
    return (f'<td><video src="{video}" controls loop muted {play} playsinline>'
            f'<img class="vid" src="{gif}" alt="video"></video><br>'
            f'{html.escape(str(rec["score_name"]))} {score} {mark}<br>{rec["seconds"]:.1f} s '
            f'<a href="{gif}">gif</a></td>')


def instances_html(records: list[dict], items=None, title: str = "Benchmark instances") -> str:
    """The page as a string. ``items``: suite items giving instance order and prompts (default: the records' ids in
    first-seen order). Every instance of ``items`` and every record's instance gets a row."""
    labels = method_labels(records)
    methods = sorted(set(labels.values()))
    from .summary import row_kind, shown_label  # summary imports this module

    kind = {label: row_kind(key[0]) for key, label in labels.items()}
    cell = {(r["instance_id"], labels[(r["method"], r["config_hash"])]): r for r in records}
    rows, seen = [], set()
    for it in items or []:
        rows.append((it.id, it.task, it.category, it.prompt))
        seen.add(it.id)
    for r in records:
        if r["instance_id"] not in seen:
            rows.append((r["instance_id"], r["task"], r["category"], ""))
            seen.add(r["instance_id"])
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
           "<p>Summary: <a href='summary.md'>summary.md</a>, <a href='summary.csv'>summary.csv</a>, "
           "<a href='score_vs_seconds.png'>score vs seconds</a>, <a href='categories.png'>per category</a></p>",
           "<table><tr><th>instance</th><th>task / category</th><th>prompt</th>"
           + "".join(f"<th>{html.escape(shown_label(m, kind[m]))}</th>" for m in methods) + "</tr>"]
    for iid, task, cat, prompt in rows:
        out.append(f'<tr id="{html.escape(iid, quote=True)}"><td>{html.escape(iid)}</td>'
                   f"<td>{html.escape(task)}<br>{html.escape(cat)}</td><td>{html.escape(prompt)}</td>"
                   + "".join(_cell(cell.get((iid, m)), len(rows) <= AUTOPLAY_MAX_ROWS) for m in methods) + "</tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)
