"""What a record's result depends on besides its config: the suite item's content and the models' files.

A record counts as done only while both still match (``runner.pending_items``); one that does not is stale: its
instance runs again, the reason is printed, and the reports leave it out (``stale_reason``).

- ``item_key(item)``: the item's own fields (task, category, index, split, prompt, checklist, the judge's other
  fields) and the SHA-256 of every file it refers to (first frame, ground truth, input video); never the paths, so a
  suite folder moved elsewhere keeps its records, while another suite of the same file name does not borrow them.
- ``models_key(identity)``: the files behind the ``pipeline``, ``teacher`` and ``judge`` specs (``spec_fingerprint``).
  For a folder: every file's path and size; the SHA-256 of files up to ``SMALL_FILE`` (configs, tokenizers, index
  files), and the modification time of larger ones (weights): hashing a 10 GB model on every run costs about 20 s at
  500 MB/s, and retraining into the same path rewrites the files. A model folder copied without its times
  (``cp`` without ``-p``, a fresh download) therefore counts as changed and its instances run again: the safe side.
"""

from __future__ import annotations

import hashlib
import json
import os

from .records import config_hash

__all__ = ["item_key", "item_keys", "spec_fingerprint", "models_key", "models_key_of_config", "stale_reason",
           "current_records"]

SMALL_FILE = 4 << 20  # 4 MiB: configs, tokenizer files and safetensors index files are hashed whole
_digests: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> SHA-256: one read per file and process


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes, memoized per process on the file's size, mtime and inode."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def _file_or_none(path):
    return None if not path else (file_digest(path) if os.path.isfile(path) else "missing")


def item_key(item) -> str:
    """12 hex digits standing for everything of ``item`` a result depends on (see the module docstring)."""
    fields = {"task": item.task, "category": item.category, "index": item.index, "split": item.split,
              "prompt": item.prompt, "checklist": [list(c) for c in item.checklist],
              "image": _file_or_none(item.image),
              "ground_truth": {k: _file_or_none(p) for k, p in sorted(item.ground_truth.items())},
              "extra": {k: (_file_or_none(v) if k.endswith("_path") else v) for k, v in sorted(item.extra.items())}}
    if item.toy is not None:  # the built-in world: its generator's seed and first frame
        toy = item.toy
        fields["toy"] = [toy.task_type, toy.seed, toy.difficulty,
                         hashlib.sha256(toy.first_frame.contiguous().numpy().tobytes()).hexdigest()]
    return config_hash(fields)


def item_keys(items) -> dict[str, str]:
    """{item id: ``item_key``}."""
    return {it.id: item_key(it) for it in items}


def _folder_fingerprint(root: str) -> dict:
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))  # .git, .cache: not the model
        for name in sorted(files):
            path = os.path.join(d, name)
            if not name.startswith(".") and os.path.isfile(path):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                st = os.stat(path)
                out[rel] = [st.st_size, file_digest(path) if st.st_size <= SMALL_FILE else st.st_mtime_ns]
    return out


def spec_fingerprint(spec: str | None, role: str = "pipeline"):
    """What a ``--pipeline`` / ``--teacher`` / ``--judge`` spec (``evaluate.models``) stands for on disk: the folder's
    files (a local folder, ``toy``'s shipped weights, a hub id's cached snapshot), the source file defining the
    factory (``py:MODULE:CALLABLE``), or the spec itself where nothing on disk can be found (``none``, ``teacher``)."""
    if not spec or spec in ("none", "teacher"):
        return spec
    if spec == "toy":
        from .models import toy_folder

        return _folder_fingerprint(toy_folder("--pipeline" if role == "pipeline" else "--teacher"))
    if spec.startswith("py:"):
        import inspect

        from .models import resolve_factory

        try:
            source = inspect.getsourcefile(resolve_factory(spec, f"--{role}"))
        except (ValueError, TypeError):  # not importable now, or built-in: the spec is all there is
            return spec
        return {spec: file_digest(source)} if source and os.path.isfile(source) else spec
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return _folder_fingerprint(path)
    try:  # a hub id: its snapshot in the local cache, if any
        from huggingface_hub import snapshot_download

        return _folder_fingerprint(snapshot_download(spec, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, no hub library, not a repo id: the id is all there is
        return spec


def models_key(identity: dict) -> dict | None:
    """{role: 12 hex digits for the files behind ``identity``'s spec of it} for the ``pipeline``, ``teacher`` and
    ``judge``, and Best-of-N's ``select_judge`` where one is named; None when it names neither a pipeline nor a
    teacher (models passed as objects, or a sanity method without a teacher: nothing on disk to fingerprint)."""
    if not identity.get("pipeline") and not identity.get("teacher"):
        return None
    roles = ("pipeline", "teacher", "judge") + (("select_judge",) if identity.get("select_judge") else ())
    return {role: config_hash(spec_fingerprint(identity.get(role), role)) for role in roles}


def models_key_of_config(out_dir, chash: str) -> dict | None:
    """``models_key`` of the specs a config hash ran with (``out/configs/<hash>.json``, written by ``run_bench``),
    now; None when that file or its specs are missing (then nothing can be said about those records' models)."""
    try:
        with open(os.path.join(os.fspath(out_dir), "configs", f"{chash}.json"), encoding="utf-8") as f:
            return models_key(json.load(f).get("identity") or {})
    except (OSError, ValueError, AttributeError):
        return None


def stale_reason(rec: dict, item_key_now: str | None, models_key_now) -> str | None:
    """Why ``rec`` no longer stands for its instance (None: it does). ``item_key_now`` None: not checked (an item
    not in this suite); ``models_key_now`` None: models not checked."""
    if item_key_now is not None and rec.get("item_key") != item_key_now:
        return "suite item changed" if rec.get("item_key") else "recorded without a content key (older version)"
    then = rec.get("models_key")
    if models_key_now is not None and then != models_key_now:
        if isinstance(then, dict) and isinstance(models_key_now, dict):
            roles = [r for r in models_key_now if then.get(r) != models_key_now[r]]
            return f"weights changed ({', '.join('--' + r for r in roles)})"
        return "weights changed"
    return None


def current_records(records: list[dict], keys: dict, out_dir) -> list[dict]:
    """The records of ``keys``' items (``item_keys``) that are not stale: item unchanged, and the models their config
    names (``models_key_of_config``) unchanged. What the reports and the official export may show."""
    models: dict[str, str | None] = {}
    out = []
    for r in records:
        if r["instance_id"] not in keys:
            continue
        if r["config_hash"] not in models:
            models[r["config_hash"]] = models_key_of_config(out_dir, r["config_hash"])
        if stale_reason(r, keys[r["instance_id"]], models[r["config_hash"]]) is None:
            out.append(r)
    return out
