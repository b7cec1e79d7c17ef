"""Resolving ``--pipeline`` / ``--teacher`` / ``--judge`` / ``--select-judge`` specs to objects.

A spec is one of:
- ``toy``: the built-in demo world's shipped model (``vlmteach_fast.toy.load_pipeline`` / ``load_teacher``);
- ``tiny``: the testing factories (``TINY_SPECS``): a random-weight tiny Wan2.2-TI2V-style pipeline and a teacher
  that rewards bright frames. They run any suite on a CPU in seconds: a check of the plumbing, not a result;
- ``py:MODULE:CALLABLE``: any importable zero-argument factory (your own wrapper, or tests' tiny models), called once
  per process;
- a local folder or hub id: ``DiffusionPipeline.from_pretrained`` / ``VLMTeacher.from_pretrained`` (offline: the
  hub id must be in the local cache).
``--judge`` also takes ``none`` (no checklist judging) and ``teacher`` (the teacher model, through
``VLMChecklistJudge``). ``--select-judge`` (Best-of-N's picker) is loaded like ``--teacher``; ``teacher`` there
means the teacher picks (the default).
"""

from __future__ import annotations

import importlib
import os

__all__ = ["TINY_SPECS", "expand_spec", "check_spec", "resolve_factory", "toy_folder", "load_pipeline_spec",
           "load_teacher_spec", "load_judge_spec", "load_select_judge_spec"]

# what ``tiny`` stands for, per argument: the factories the tests use (vlmteach_fast.testing)
TINY_SPECS = {"--pipeline": "py:vlmteach_fast.testing:tiny_ti2v_pipeline",
              "--teacher": "py:vlmteach_fast.testing:BrightnessTeacher",
              "--select-judge": "py:vlmteach_fast.testing:BrightnessTeacher"}


def expand_spec(spec: str | None, arg: str) -> str | None:
    """``tiny`` -> its ``py:`` factory spec for ``arg`` (``TINY_SPECS``); any other spec as given."""
    if spec == "tiny":
        if arg not in TINY_SPECS:
            raise ValueError(f"{arg} tiny: 'tiny' names a pipeline or a teacher-like model only "
                             f"({', '.join(TINY_SPECS)})")
        return TINY_SPECS[arg]
    return spec


def resolve_factory(spec: str, arg: str):
    """``py:module:callable`` -> the callable (imported now, so a typo fails before any model loads)."""
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != "py" or not parts[1] or not parts[2]:
        raise ValueError(f"{arg} {spec!r}: expected py:MODULE:CALLABLE")
    try:
        module = importlib.import_module(parts[1])
    except ImportError as err:
        raise ValueError(f"{arg} {spec!r}: cannot import module {parts[1]!r} ({err})") from err
    fn = getattr(module, parts[2], None)
    if not callable(fn):
        raise ValueError(f"{arg} {spec!r}: {parts[1]!r} has no callable {parts[2]!r}")
    return fn


def _toy(what: str, device="cpu"):
    try:
        from .. import toy

        return getattr(toy, f"load_{what}")(device=device)
    except (ImportError, FileNotFoundError) as err:
        raise RuntimeError(f"the built-in toy {what} is not available yet ({err}); pass --{what} explicitly") from err


def toy_folder(arg: str) -> str:
    """The folder of the shipped toy model that ``--pipeline toy`` / ``--teacher toy`` (``arg``) stands for."""
    try:
        from ..toy import models
    except ImportError as err:
        raise RuntimeError(f"{arg} toy: vlmteach_fast.toy could not be imported ({err})") from err
    return models.PIPELINE_DIR if arg == "--pipeline" else models.TEACHER_DIR


def _toy_weights_present(arg: str) -> None:
    path = toy_folder(arg)
    marker = "model_index.json" if arg == "--pipeline" else "config.json"
    if not os.path.isfile(os.path.join(path, marker)):
        raise RuntimeError(f"{arg} toy: the built-in toy model is not shipped yet ({path!r} has no {marker}); "
                           f"train it with the scripts in scripts/ or pass {arg} explicitly")


def check_spec(spec: str | None, arg: str) -> None:
    """Cheap checks before any model loads: factories import, local folders exist and hold the parts their loader
    reads (``loading.check_model_folder``)."""
    if spec == "toy":
        _toy_weights_present(arg)
        return
    if spec is None or spec in ("none", "teacher"):
        return
    if spec.startswith("py:"):
        resolve_factory(spec, arg)
        return
    from ..loading import check_model_folder, check_source

    path = check_source(spec, arg)
    if os.path.isdir(path):
        check_model_folder(path, arg)


def load_pipeline_spec(spec: str, device, dtype, trust_remote_code: bool = False):
    if spec == "toy":
        return _toy("pipeline", device)
    if spec.startswith("py:"):
        pipe = resolve_factory(spec, "--pipeline")()
        return pipe.to(device) if hasattr(pipe, "to") else pipe
    from ..loading import check_source, load_pipeline

    return load_pipeline(check_source(spec, "--pipeline"), device, dtype, trust_remote_code)


def load_teacher_spec(spec: str, device, dtype, trust_remote_code: bool = False, arg: str = "--teacher"):
    """A teacher-like model for ``spec`` (``arg`` names the option in errors)."""
    if spec == "toy":
        return _toy("teacher", device)
    if spec.startswith("py:"):
        return resolve_factory(spec, arg)()
    from ..loading import load_teacher

    return load_teacher(spec, device, dtype, trust_remote_code)


def load_judge_spec(spec: str | None, teacher, device, dtype, trust_remote_code: bool = False):
    """None for ``none``; a ``ChecklistJudge`` otherwise (a factory may return a judge or a teacher-like model)."""
    from .judge import VLMChecklistJudge

    if spec in (None, "none"):
        return None
    if spec == "teacher":
        return VLMChecklistJudge(teacher)
    model = resolve_factory(spec, "--judge")() if spec.startswith("py:") else \
        load_teacher_spec(spec, device, dtype, trust_remote_code)
    return model if hasattr(model, "label") else VLMChecklistJudge(model)


def load_select_judge_spec(spec: str | None, device, dtype, trust_remote_code: bool = False):
    """Best-of-N's picker for ``--select-judge``: None for None / ``teacher`` (the teacher picks), else a teacher-like
    model loaded like ``--teacher`` that must score with ``reward(frames, queries)``."""
    if spec in (None, "teacher"):
        return None
    model = load_teacher_spec(spec, device, dtype, trust_remote_code, arg="--select-judge")
    if not callable(getattr(model, "reward", None)):
        raise TypeError(f"--select-judge {spec!r}: expected a teacher-like model with reward(frames, queries), got "
                        f"{type(model).__name__}")
    return model
