"""Query synthesis support: the fixed instruction, robust parsing of what the VLM wrote, fallbacks, the cache.

The VLM's output is untrusted text (tiny or weak models write anything), so `parse_queries` never raises on it: it
accepts JSON or numbered/bulleted lists, strips, de-duplicates, drops non-questions, and when nothing usable is left
derives the goal from the task prompt and warns.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import OrderedDict

import torch

from .base import Queries

SYNTHESIS_INSTRUCTION = (
    "You will judge a video generated for the task below. The image is its first frame.\n"
    "Task: {prompt}\n"
    "Write one goal question, answerable yes or no from the final frame, that is yes exactly when the task is solved, "
    "and up to {max_process} process questions, answerable yes or no from frames across the video, about rules the "
    "motion must keep (objects stay intact, do not pass through walls, do not vanish).\n"
    'Return only JSON: {{"goal": "...", "process": ["...", "..."]}}'
)
# Generations are cut to this many characters before parsing: synthesis asks for ~4 short questions (< 1000
# characters); the cap bounds parsing time on runaway output.
MAX_OUTPUT_CHARS = 20000
# A question longer than this is almost surely rambling generation, not a checklist item (RULER-Bench's longest
# checklist question is ~200 characters).
MAX_QUESTION_CHARS = 300
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\(?\d{1,2}[.):]|goal\s*:|process\s*:|q\d*\s*[.:])\s*", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^(is|are|does|do|did|was|were|has|have|had|can|could|will|would|should|shall|must|may)\b", re.IGNORECASE
)


def build_instruction(prompt: str, max_process: int) -> str:
    """The fixed synthesis instruction for a task prompt."""
    return SYNTHESIS_INSTRUCTION.format(prompt=prompt.strip(), max_process=max_process)


def _clean(text: str) -> str:
    text = _LIST_ITEM.sub("", text)
    return " ".join(text.strip().strip("\"'`").split())


def is_question(text: str) -> bool:
    """A yes/no question: ends with '?', or starts with an auxiliary verb; printable and not overlong."""
    if not text or len(text) > MAX_QUESTION_CHARS or not text.isprintable():
        return False
    if not any(ch.isalpha() for ch in text):
        return False
    # ASCII, full-width (CJK) and Arabic question marks.
    return text.endswith(("?", "\uff1f", "\u061f")) or bool(_QUESTION_START.match(text))


_WH_START = re.compile(r"^(what|which|who|whom|whose|where|when|why|how)\b", re.IGNORECASE)


def warn_unless_yes_no(queries) -> None:
    """Warn (``UserWarning``) naming each question that is not a yes/no question: the reward is log P("Yes"), which
    means nothing for "Describe the video." or "What colour is the ball?". Used for questions a user supplies (the
    teacher's own are filtered by ``is_question`` when parsed)."""
    bad = [q for q in queries.questions if not is_question(q) or _WH_START.match(q.strip())]
    if bad:
        warnings.warn(f"queries: {len(bad)} of {len(queries)} are not yes/no questions, so P(\"Yes\") is not a "
                      f"meaningful reward for them: {bad}; ask e.g. 'Is the ball on the square?'", UserWarning,
                      stacklevel=3)


def _from_json(text: str):
    """(goal, process) from the first JSON object in `text` that has a "goal" or "process" key, or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and ("goal" in obj or "process" in obj):
            goal = obj.get("goal")
            proc = obj.get("process", [])
            goal = goal if isinstance(goal, str) else None
            proc = [p for p in proc if isinstance(p, str)] if isinstance(proc, list) else []
            return goal, proc
        start = text.find("{", start + 1)
    return None


def _dedupe(items: list[str]) -> list[str]:
    seen, out = set(), []
    for q in items:
        key = q.lower().rstrip("?. ")
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def fallback_goal(prompt: str) -> str:
    """A goal question derived from the task prompt alone."""
    task = " ".join(str(prompt).split())[: MAX_QUESTION_CHARS - 60].rstrip(" .!?")
    return f"Does the video show the task completed: {task}?" if task else "Is the task in the video completed?"


def parse_queries(text: str, prompt: str, max_process: int = 3) -> tuple[Queries, bool]:
    """Parse a VLM's synthesis output into `Queries`; never raises on `text`.

    Args:
        text: the generated text (anything).
        prompt: the task prompt, used for the fallback goal.
        max_process: keep at most this many process questions.
    Returns: (queries, fell_back). `fell_back` is True when the goal had to be derived from the prompt; a warning is
    issued then.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text[:MAX_OUTPUT_CHARS]
    goal, process = None, []
    parsed = _from_json(text)
    if parsed is not None:
        goal, process = parsed
        goal = _clean(goal) if goal else None
        process = [_clean(p) for p in process]
    else:
        lines = [_clean(line) for line in re.split(r"[\r\n]+", text)]
        lines = [q for q in lines if is_question(q)]
        if lines:
            goal, process = lines[0], lines[1:]
    fell_back = not (goal and is_question(goal))
    if fell_back:
        goal = fallback_goal(prompt)
    process = [q for q in _dedupe([goal] + [p for p in process if is_question(p)])[1:]][: max(0, max_process)]
    if fell_back:
        warnings.warn(
            f"query synthesis output had no usable goal question; using one derived from the prompt: {goal!r}",
            stacklevel=2,
        )
    return Queries(goal=goal, process=process), fell_back


def queries_from_checklist(checklist, goal_metric: str = "Instruction Following") -> Queries:
    """RULER-Bench checklist (list of one-key {metric: question} objects) -> Queries.

    The first question under `goal_metric` becomes the goal; every other question is a process question.
    """
    if not isinstance(checklist, (list, tuple)) or not checklist:
        raise ValueError(f"checklist must be a non-empty list of {{metric: question}} objects, got {checklist!r}")
    items = []
    for i, entry in enumerate(checklist):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"checklist[{i}] must be a one-key {{metric: question}} object, got {entry!r}")
        (metric, question), = entry.items()
        items.append((str(metric), " ".join(str(question).split())))
    goal_idx = next((i for i, (m, _) in enumerate(items) if m == goal_metric), 0)
    return Queries(goal=items[goal_idx][1], process=[q for i, (_, q) in enumerate(items) if i != goal_idx])


def image_key(image: torch.Tensor | None) -> str:
    """Content hash of an image (or "none"), for the query cache."""
    if image is None:
        return "none"
    t = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha1(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


class QueryCache:
    """LRU cache of synthesized Queries keyed by (prompt, image hash, max_process)."""

    def __init__(self, max_entries: int = 256):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()

    def key(self, prompt: str, image: torch.Tensor | None, max_process: int) -> tuple:
        return (prompt, image_key(image), max_process)

    def get(self, key):
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        return None

    def put(self, key, value: Queries) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
