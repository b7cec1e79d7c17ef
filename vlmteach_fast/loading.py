"""Loading models from user-given sources, and the cheap checks that run before any model loads (so a typo never
costs a model load). Used by ``vlmteach-fast solve`` and by the benchmark runner (``evaluate/models.py``).
"""

from __future__ import annotations

import os
import tempfile

import torch

__all__ = ["check_source", "check_model_folder", "check_out_dir", "check_device_dtype", "family_from_folder",
           "default_dtype", "load_pipeline", "load_teacher"]


def check_source(value: str, arg: str) -> str:
    """A model source: local paths (starting with ``.``, ``/``, ``~`` or existing) must be folders; anything else is
    taken as a hub id (loaded only from the local cache when offline). Returns the expanded path or the id.
    ``FileNotFoundError`` naming ``arg`` otherwise."""
    path = os.path.expanduser(value)
    looks_local = value.startswith((".", "/", "~")) or os.path.exists(path)
    if looks_local and not os.path.isdir(path):
        raise FileNotFoundError(f"{arg} directory not found: {value!r}")
    return path if looks_local else value


# A transformers model folder holds its tokenizer as one of these (fast, sentencepiece, BPE vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.json")


def check_model_folder(path: str, arg: str) -> None:
    """A local model folder has the parts its loader will ask for, so a missing one fails in one line before any
    model loads: a diffusers pipeline (``model_index.json``) every component it lists (``vae/``, ``tokenizer/``,
    ...), a transformers VLM (``config.json``, for ``--teacher`` / ``--judge``) its tokenizer.
    ``FileNotFoundError`` naming ``arg``, the folder and the part. Folders of other layouts are left to their
    loaders."""
    import json

    index = os.path.join(path, "model_index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                components = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"{arg} {path!r}: model_index.json is not readable JSON ({err})") from err
        for name, spec in sorted(components.items()):
            listed = isinstance(spec, list) and len(spec) == 2 and spec[1] is not None and not name.startswith("_")
            if listed and not os.path.isdir(os.path.join(path, name)):
                raise FileNotFoundError(f"{arg} {path!r}: model_index.json lists `{name}` ({spec[1]}) but the folder "
                                        f"has no {name}/; copy the pipeline's {name} folder into it")
    elif arg in ("--teacher", "--judge") and os.path.isfile(os.path.join(path, "config.json")):
        if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
            raise FileNotFoundError(f"{arg} {path!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
                                    "the model's tokenizer or processor into it")


def check_out_dir(out: str, arg: str = "--out", output_set: bool = False) -> None:
    """Prove ``out`` writable by writing a probe file (``os.access`` says yes to root even on a read-only mount).
    Nothing already in it is touched. ``NotADirectoryError`` / ``PermissionError`` otherwise.

    ``output_set=False`` (a benchmark folder): ``out`` is created. ``output_set=True`` (``solve``'s folder, which
    its result replaces as a whole): nothing is created (the probe goes into the nearest existing folder) and a
    folder holding files that no method writes is refused (``io_atomic.OutputSetError``, a ValueError). An empty
    path is refused (``ValueError``): it would mean the current folder."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{arg} must be a folder path (str or os.PathLike), got {type(out).__name__}")
    out = os.fspath(out)
    if not out.strip():
        raise ValueError(f"{arg} must be a non-empty folder path, got {out!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"{arg} {out!r} exists and is not a directory")
    if output_set:
        from .io_atomic import check_replaceable_dir
        from .outputs import OUTPUT_NAMES

        check_replaceable_dir(out, OUTPUT_NAMES, what=arg)
        probe = os.path.abspath(out)
        while not os.path.isdir(probe):
            probe = os.path.dirname(probe)
    else:
        probe = out
    try:
        if not output_set:
            os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise PermissionError(f"{arg} directory {out!r} is not writable ({err.strerror or err})") from err


def check_device_dtype(device: str | None, dtype: str | None, arg: str = "--device"):
    """(torch.device, torch.dtype) from command-line strings, checked before any model loads: a device torch parses
    and that exists here, and a dtype that works on it (default: ``default_dtype``). ``ValueError`` naming the
    setting, the value and what is allowed otherwise."""
    try:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, ValueError):
        raise ValueError(f"{arg} {device!r} is not a device; allowed: cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{arg} {device!r} is not supported; allowed: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{arg} {device!r}: no CUDA device is visible to torch here (torch built for "
                             f"CUDA {torch.version.cuda or 'none'}); allowed: cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{arg} {device!r}: only {torch.cuda.device_count()} CUDA device(s) here; "
                             f"allowed: cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if dtype == "float16" and dev.type == "cpu":
        # fp16 on the CPU overflows in the VAE: NaN frames, then a misleading value-range error much later
        raise ValueError("--dtype float16 is not supported on the CPU (NaN frames); allowed there: float32, bfloat16")
    return dev, default_dtype(dev, dtype)


def family_from_folder(source: str):
    """The model family (``reasoner.VideoFamily``) of a local diffusers pipeline folder, built from its JSON configs
    alone (no weights are read), so that geometry can be checked before any model loads. None when ``source`` is not
    such a folder or its family needs the loaded pipeline (what its configs say is not enough)."""
    import json
    from types import SimpleNamespace

    from .reasoner.reasoner import family_for

    def config(*parts):
        with open(os.path.join(source, *parts)) as f:
            data = json.load(f)
        return SimpleNamespace(**{k: v for k, v in data.items() if not k.startswith("_")}), data

    try:
        pipe_cfg, index = config("model_index.json")
        stand_in = type(index["_class_name"], (), {})()  # named like the pipeline: family_for goes by class name
        stand_in.config = pipe_cfg
        stand_in.vae = SimpleNamespace(config=config("vae", "config.json")[0])
        stand_in.transformer = SimpleNamespace(config=config("transformer", "config.json")[0])
        stand_in.transformer_2 = None
        return family_for(stand_in)
    except Exception:  # noqa: BLE001 - not a local diffusers folder, or a family that needs more: checked after loading
        return None


def default_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """``torch.<name>`` if given, else bfloat16 on CUDA and float32 elsewhere (CPU bf16 matmuls are slow)."""
    if name:
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"`dtype` must name a torch dtype (float32, bfloat16, float16), got {name!r}")
        return dtype
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_pipeline(source: str, device, dtype, trust_remote_code: bool = False):
    """A diffusers pipeline from a folder or hub id, moved to ``device``; ``RuntimeError`` naming the source."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"--pipeline {source!r} could not be loaded as a diffusers pipeline: {err}") from err
    return pipe.to(device)


def load_teacher(source: str, device, dtype, trust_remote_code: bool = False):
    """A ``VLMTeacher`` from a folder or hub id (checked with :func:`check_source`)."""
    from .teacher import VLMTeacher

    return VLMTeacher.from_pretrained(check_source(source, "--teacher"), dtype=dtype, device=device,
                                      trust_remote_code=trust_remote_code)
