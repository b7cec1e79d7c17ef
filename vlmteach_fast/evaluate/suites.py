"""Benchmark suites -> a list of ``BenchItem``: RULER-Bench style JSON/JSONL, VBVR-Bench style folders, the built-in
toy suite.

Malformed items never stop a suite from loading: each becomes a ``SuiteError`` naming the file and line (JSON/JSONL)
or the sample folder (VBVR), and the other items still run. Formats:

- RULER-Bench style, ``suite.json`` (a list of objects, or ``{"items": [...]}``) or ``suite.jsonl`` (one object per
  line; the official file is ``data.jsonl`` at the dataset root): ``index``, ``task_name``, ``category``, ``prompt``,
  optional ``input_image_path`` (relative to the suite file, and inside its folder unless
  ``allow_outside_paths``: a suite file is data, and must not make the run open /etc/passwd or a home folder's
  files), ``checklist``: a list of one-key objects
  ``{metric: question}`` with metric in ``RULER_METRICS``. Indices restart in every task (the official layout is
  ``{task_name}/{index}``), so an item's id is ``"{task_name}/{index}"`` and both must be usable as one file name
  (``check_path_component``: checked when the suite loads, not when the reports are written). The official judge's
  other inputs
  (``gt_image_path``, ``input_video_path``: resolved like the image; ``implicit_explanation``) are kept in
  ``BenchItem.extra``.
- VBVR-Bench style folder (the downloaded ground truth): ``<split>/<task>/<sample>/first_frame.png`` + ``prompt.txt``,
  optional ``final_frame.png``, ``ground_truth.mp4`` and (VBVR-Pro-Bench) ``metadata.json``. The category is
  VBVR's cognitive category of the task (Abstraction, Knowledge, Perception, Spatiality, Transformation) when
  VBVR-EvalKit (or, for a sample with ``metadata.json``, VBVR-Pro-Bench) is installed (its task table), else the
  task name; the split folder (In-Domain_50 / Out-of-Domain_50) is ``BenchItem.split``.
- ``toy`` or ``toy:N``: N (default 12) held-out instances of the built-in demo world (``vlmteach_fast.toy``), scored
  by its rule scorers.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote, unquote
from dataclasses import dataclass, field

__all__ = ["RULER_METRICS", "DEFAULT_QUERY_METRICS", "BenchItem", "SuiteError", "Suite", "load_suite",
           "item_id_from_dir", "check_path_component",
           "load_ruler", "load_vbvr", "load_toy", "checklist_queries"]

RULER_METRICS = ("Instruction Following", "Visual Consistency", "Visual Fidelity", "Rule Coherence")
# The rule and instruction questions say what a solved task looks like: they steer the teacher. Consistency and
# fidelity questions are kept for scoring only (optimizing against them would also be judging with them).
DEFAULT_QUERY_METRICS = ("Rule Coherence", "Instruction Following")
TOY_DEFAULT_N = 12
# fields of a RULER item the official judge reads besides the ones BenchItem names; paths among them are resolved
RULER_EXTRA_PATHS = ("gt_image_path", "input_video_path")
RULER_EXTRA_TEXT = ("implicit_explanation",)


@dataclass
class BenchItem:
    """One benchmark instance.

    Attributes:
        id: unique within the suite (RULER: ``task/index``; VBVR: ``split/task/sample``); ``dir_name`` is its
            reversible folder name.
        task: task name; category: rule category (RULER) or the task (VBVR, toy).
        index: the item's index within its task as the benchmark writes it (RULER ``index``, VBVR sample folder);
            the official output layouts name videos by it.
        prompt: the task prompt.
        image: absolute path of the first frame, or None (text-to-video).
        checklist: [(metric, question)] in file order (RULER), else empty.
        split: VBVR split name, "" otherwise.
        ground_truth: {"final_frame": path, "video": path, "metadata": path} where present (VBVR; "metadata":
            VBVR-Pro-Bench's ``metadata.json``).
        source: "file:line" or folder the item came from (for error messages).
        extra: the benchmark's other fields, kept for its official judge (RULER: ``gt_image_path`` and
            ``input_video_path`` as absolute paths, ``implicit_explanation``).
        toy: the ``ToyInstance`` (built-in suite only; not serialized).
    """

    id: str
    task: str
    category: str
    prompt: str
    image: str | None = None
    checklist: list[tuple[str, str]] = field(default_factory=list)
    split: str = ""
    ground_truth: dict = field(default_factory=dict)
    source: str = ""
    index: str = ""
    extra: dict = field(default_factory=dict)
    toy: object = None

    def __post_init__(self):
        for name in ("id", "task", "category", "prompt"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"`{name}` must be a non-empty string, got {v!r}")

    @property
    def dir_name(self) -> str:
        """``id`` as one path component, reversibly (``item_id_from_dir`` gives the id back): characters other than
        letters, digits, ``_``, ``-`` and ``.`` are percent-encoded ("task/3" -> "task%2F3"), and so is a leading
        dot (no hidden or "." / ".." folders)."""
        name = quote(self.id, safe="")  # keeps A-Z a-z 0-9 _ . - ~ only
        return "%2E" + name[1:] if name.startswith(".") else name


def item_id_from_dir(name: str) -> str:
    """The item id a ``BenchItem.dir_name`` stands for."""
    return unquote(name)


def check_path_component(value: str, what: str) -> None:
    """``value`` must be usable as one file or folder name: the official output layouts write
    ``{task}/{index}.mp4`` (RULER) and ``{split}/{task}/{sample}.mp4`` (VBVR). ``ValueError`` naming ``what``."""
    if value in ("", ".", "..") or "/" in value or os.sep in value or "\0" in value:
        raise ValueError(f"{what} must be usable as one file name (not empty, '.' or '..', no '/'), got {value!r}")


@dataclass
class SuiteError:
    """A suite entry that could not be used: ``where`` is "file:line" or a folder; ``message`` says what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Suite:
    name: str
    items: list[BenchItem]
    errors: list[SuiteError] = field(default_factory=list)
    kind: str = "ruler"  # "ruler" | "vbvr" | "toy"
    warnings: list[SuiteError] = field(default_factory=list)  # entries that run, but not as the benchmark's own


def checklist_queries(item: BenchItem, metrics=DEFAULT_QUERY_METRICS):
    """The teacher's ``Queries`` from the checklist questions of ``metrics`` (first one = goal), or None when the item
    has none (the teacher then writes its own)."""
    from ..teacher import Queries

    questions = [q for m, q in item.checklist if m in metrics]
    return Queries(goal=questions[0], process=questions[1:]) if questions else None


# -- RULER-Bench style ---------------------------------------------------------------------------------------------

def _ruler_item(obj, base_dir: str, where: str, position: int, allow_outside_paths: bool = False) -> BenchItem:
    if not isinstance(obj, dict):
        raise ValueError(f"an item must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("task_name", "category", "prompt") if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    checklist = []
    raw = obj.get("checklist", [])
    if not isinstance(raw, list):
        raise ValueError(f"`checklist` must be a list of one-key objects {{metric: question}}, "
                         f"got {type(raw).__name__}")
    for j, entry in enumerate(raw):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"checklist[{j}] must be a one-key object {{metric: question}}, got {entry!r}")
        (metric, question), = entry.items()
        if metric not in RULER_METRICS:
            raise ValueError(f"checklist[{j}]: unknown metric {metric!r}; allowed: {list(RULER_METRICS)}")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"checklist[{j}] ({metric}): the question must be a non-empty string")
        checklist.append((metric, question))
    image = _ruler_path(obj, "input_image_path", base_dir, allow_outside_paths)
    extra = {k: _ruler_path(obj, k, base_dir, allow_outside_paths) for k in RULER_EXTRA_PATHS if obj.get(k)}
    for k in RULER_EXTRA_TEXT:
        if obj.get(k):
            if not isinstance(obj[k], str):
                raise ValueError(f"`{k}` must be a string, got {type(obj[k]).__name__}")
            extra[k] = obj[k]
    index = str(obj.get("index", position))
    task = str(obj["task_name"])
    check_path_component(task, "`task_name`")
    check_path_component(index, "`index`")
    return BenchItem(id=f"{task}/{index}", task=task, category=str(obj["category"]),
                     prompt=obj["prompt"] if isinstance(obj["prompt"], str) else "", image=image,
                     checklist=checklist, source=where, index=index, extra=extra)


def _ruler_path(obj: dict, key: str, base_dir: str, allow_outside_paths: bool = False) -> str | None:
    """``obj[key]`` resolved against the suite file's folder (the dataset root), which must hold that file; a path
    leading outside that folder (``..``, absolute) is refused unless ``allow_outside_paths``. The check is on the
    written path, not on symlinks: a hub snapshot's files are links into its blob store."""
    path = obj.get(key)
    if path is None or path == "":
        return None
    if not isinstance(path, str):
        raise ValueError(f"`{key}` must be a path string, got {path!r}")
    written, path = path, os.path.normpath(os.path.join(base_dir, path))
    if not allow_outside_paths and os.path.commonpath([base_dir, path]) != base_dir:
        raise ValueError(f"`{key}` {written!r} leads outside the suite's folder {base_dir!r}; paths in a suite file "
                         "must stay under it (--allow-outside-paths to allow it)")
    if not os.path.isfile(path):
        raise ValueError(f"`{key}` file not found: {path!r}")
    return path


def _jsonl_entries(f):
    """(line number, parsed object or the ValueError saying why not) per non-empty line, read as they come."""
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            yield lineno, ValueError(f"not valid JSON ({err.msg} at column {err.colno})")


def _json_entries(path: str, f) -> list:
    text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        # one bad character spoils a whole .json file: nothing can run, so this one is fatal
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from err
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: a RULER-style .json suite must hold a list of items (or {{\"items\": [...]}})")
    return list(zip(_item_lines(text, len(data)), data))


def load_ruler(path: str, allow_outside_paths: bool = False, limit: int | None = None) -> Suite:
    """A RULER-Bench style ``.json`` or ``.jsonl`` file. Bad items become ``SuiteError``s ("file:line: item
    task/index: why"). ``allow_outside_paths``: let the items' paths lead outside the file's folder. ``limit``: stop
    after that many usable items; a ``.jsonl`` file is then read only that far (``bench --limit 1`` on a
    million-item suite does not parse, or report errors of, the lines after the first item)."""
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    items, errors, seen = [], [], {}
    with open(path, encoding="utf-8") as f:
        entries = _jsonl_entries(f) if path.endswith(".jsonl") else _json_entries(path, f)
        for position, (lineno, obj) in enumerate(entries):
            if limit is not None and len(items) >= limit:
                break
            where = f"{path}:{lineno}"
            label = f"item {obj['task_name']}/{obj.get('index', position)}: " if isinstance(obj, dict) and \
                "task_name" in obj else ""
            try:
                if isinstance(obj, Exception):
                    raise obj
                item = _ruler_item(obj, base, where, position, allow_outside_paths)
                if not item.prompt.strip():
                    raise ValueError("`prompt` must be a non-empty string")
                if item.id in seen:
                    raise ValueError(f"duplicate index {item.index!r} in task {item.task!r} "
                                     f"(first at {seen[item.id]})")
            except ValueError as err:
                errors.append(SuiteError(where, label + str(err)))
                continue
            seen[item.id] = where
            items.append(item)
    return Suite(os.path.splitext(os.path.basename(path))[0], items, errors, "ruler")


def _item_lines(text: str, n: int) -> list[int]:
    """Line number where each top-level list element of a JSON document starts (best effort: a scan of brackets
    outside strings), so errors in a pretty-printed .json suite point at the right line."""
    lines, depth, in_str, esc, line, expecting = [], 0, False, False, 1, False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch.isspace():
            continue
        if depth == 1 and expecting and ch not in ",]":
            lines.append(line)
            expecting = False
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth == 1 and ch == "[":
                expecting = True
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 1:
            expecting = True
    lines += [1] * (n - len(lines))  # {"items": [...]} wrapping: depth differs; fall back to line 1
    return lines[:n]


# -- VBVR-Bench style ----------------------------------------------------------------------------------------------

def load_vbvr(root: str) -> Suite:
    """A VBVR-Bench style folder ``<split>/<task>/<sample>/{first_frame.png, prompt.txt, [final_frame.png],
    [ground_truth.mp4], [metadata.json]}`` (VBVR-Pro-Bench adds ``metadata.json``, kept as
    ``ground_truth["metadata"]``). Samples missing a first frame or prompt become ``SuiteError``s naming the folder;
    a sample folder not named with five digits (the EvalKit skips it) loads with a warning in ``Suite.warnings``."""
    from .vbvr import vbvr_category
    from .vbvr_pro import vbvr_pro_category

    root = os.path.abspath(os.fspath(root))
    items, errors, warns = [], [], []
    for split in sorted(os.listdir(root)):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir) or split.startswith("."):
            continue
        for task in sorted(os.listdir(split_dir)):
            task_dir = os.path.join(split_dir, task)
            if not os.path.isdir(task_dir):
                continue
            for sample in sorted(os.listdir(task_dir)):
                d = os.path.join(task_dir, sample)
                if not os.path.isdir(d):
                    continue
                first, prompt_file = os.path.join(d, "first_frame.png"), os.path.join(d, "prompt.txt")
                missing = [os.path.basename(p) for p in (first, prompt_file) if not os.path.isfile(p)]
                if missing:
                    errors.append(SuiteError(d, f"missing {missing}"))
                    continue
                with open(prompt_file, encoding="utf-8") as f:
                    prompt = f.read().strip()
                if not prompt:
                    errors.append(SuiteError(prompt_file, "empty prompt"))
                    continue
                gt = {k: os.path.join(d, name) for k, name in (("final_frame", "final_frame.png"),
                                                                ("video", "ground_truth.mp4"),
                                                                ("metadata", "metadata.json"))
                      if os.path.isfile(os.path.join(d, name))}
                if not re.fullmatch(r"\d{5}", sample):
                    warns.append(SuiteError(d, "the sample folder's name is not five digits: VBVR-EvalKit's "
                                               "run_evaluation.py skips such a video, so the official numbers leave "
                                               "it out (this run still makes and scores it)"))
                # a metadata.json marks VBVR-Pro-Bench, whose task table may differ from VBVR-EvalKit's
                category = (vbvr_pro_category(task) if "metadata" in gt else None) or vbvr_category(task) or task
                items.append(BenchItem(id=f"{split}/{task}/{sample}", task=task,
                                       category=category, prompt=prompt, image=first,
                                       split=split, ground_truth=gt, source=d, index=sample))
    if not items and not errors:
        raise ValueError(f"{root}: no <split>/<task>/<sample>/ folders found (VBVR-style suite)")
    return Suite(os.path.basename(root.rstrip("/")), items, errors, "vbvr", warns)


# -- built-in ------------------------------------------------------------------------------------------------------

def load_toy(n: int = TOY_DEFAULT_N, seed: int = 0) -> Suite:
    """``n`` held-out instances of the built-in demo world (first frame as a tensor, scored by its rule scorers)."""
    try:
        from .. import toy
    except ImportError as err:  # a trimmed install may lack the demo world; say so instead of a bare ImportError
        raise RuntimeError(f"the built-in suite needs vlmteach_fast.toy, which could not be imported: {err}") from err
    items = []
    for i, inst in enumerate(toy.make_instances(n, seed=seed)):
        items.append(BenchItem(id=f"toy-{i:04d}-{inst.task_type}", task=inst.task_type, category=inst.difficulty,
                               prompt=inst.prompt, source=f"toy:{i}", toy=inst))
    # instance i does not depend on n (one seed per index), so the name leaves n out: "toy:24" after "toy:12" keeps
    # the same config hash and runs only the 12 new instances
    return Suite("toy", items, [], "toy")


def load_suite(spec: str, allow_outside_paths: bool = False, limit: int | None = None) -> Suite:
    """``spec``: ``toy`` / ``toy:N``, a ``.json`` / ``.jsonl`` file, or a VBVR-style folder. ``allow_outside_paths``:
    a RULER-style file's paths may lead outside its folder. ``limit``: a RULER-style file is read only up to that
    many usable items (``load_ruler``); the others load whole."""
    spec = os.fspath(spec)
    if spec == "toy" or spec.startswith("toy:"):
        n = spec.partition(":")[2] or str(TOY_DEFAULT_N)
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--suite toy:N needs a positive N, got {spec!r}")
        return load_toy(int(n))
    if os.path.isdir(spec):
        return load_vbvr(spec)
    if os.path.isfile(spec):
        if not spec.endswith((".json", ".jsonl")):
            raise ValueError(f"--suite file must end in .json or .jsonl (RULER-style), got {spec!r}")
        return load_ruler(spec, allow_outside_paths, limit)
    raise FileNotFoundError(f"--suite not found: {spec!r} (a .json/.jsonl file, a VBVR-style folder, or 'toy[:N]')")
