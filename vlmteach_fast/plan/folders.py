"""A user's checkpoint folders as shape-only models: every module built from its config on the meta device (no
weight file is read), tokenizers, processors and schedulers loaded as they are (small files), so ``vlmteach-fast
plan`` accounts the models a user has, not only the named shapes."""

from __future__ import annotations

import json
import os

import torch

from .shapes import _building

__all__ = ["meta_pipeline", "meta_teacher"]


def _component(lib: str, cls_name: str, folder: str, dtype):
    import importlib

    cls = getattr(importlib.import_module(lib), cls_name, None)
    if cls is None:
        raise ValueError(f"{folder!r}: {lib}.{cls_name} is not available in the installed {lib}")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        return cls.from_pretrained(folder)  # tokenizer, scheduler, processor: small files
    with _building("meta", dtype):
        if lib == "diffusers":
            model = cls.from_config(cls.load_config(folder))
        else:
            from transformers import AutoConfig

            model = cls._from_config(AutoConfig.from_pretrained(folder), dtype=dtype)
    return _keep_in_fp32(model, _fp32_names(model, lib, dtype))


def _keep_in_fp32(model: torch.nn.Module, names: tuple) -> torch.nn.Module:
    """The parameters a loader keeps in float32 whatever the dtype asked for (a name component of the parameter in
    ``names``), as ``from_pretrained`` loads them."""
    for name, p in model.named_parameters():
        if p.is_floating_point() and any(k in name.split(".") for k in names):
            p.data = p.data.float()
    return model


def _fp32_names(model: torch.nn.Module, lib: str, dtype) -> tuple:
    """diffusers keeps ``_keep_in_fp32_modules`` in float32 at any lower precision; transformers keeps
    ``_keep_in_fp32_modules_strict`` always and ``_keep_in_fp32_modules`` in float16 only."""
    names = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    if lib == "diffusers":
        return names
    return tuple(getattr(model, "_keep_in_fp32_modules_strict", None) or ()) + (names if dtype == torch.float16 else ())


def meta_pipeline(path: str, dtype=torch.bfloat16):
    """The diffusers pipeline in folder ``path`` (``model_index.json`` + one folder per component), its modules on
    the meta device in ``dtype``. ``ValueError`` naming the folder when it is not a pipeline folder."""
    import diffusers

    index_file = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_file):
        raise ValueError(f"`video` must be a named shape or a diffusers pipeline folder (with model_index.json), "
                         f"got {path!r}")
    with open(index_file) as f:
        index = json.load(f)
    pipeline_cls = getattr(diffusers, index.get("_class_name", ""), None)
    if pipeline_cls is None:
        raise ValueError(f"{index_file}: unknown pipeline class {index.get('_class_name')!r}")
    kwargs = {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if isinstance(value, list) and len(value) == 2:
            lib, cls_name = value
            kwargs[name] = None if lib is None else _component(lib, cls_name, os.path.join(path, name), dtype)
        else:
            kwargs[name] = value  # a registered setting (expand_timesteps, boundary_ratio, ...)
    pipe = pipeline_cls(**kwargs)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval().requires_grad_(False)
    return pipe


def meta_teacher(path: str, dtype=torch.bfloat16, reward_config=None):
    """The ``VLMTeacher`` of folder ``path`` (a transformers VLM checkpoint), its model on the meta device."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    from ..teacher import VLMTeacher

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"`teacher` must be a named shape or a transformers model folder (with config.json), "
                         f"got {path!r}")
    with _building("meta", dtype):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    model = _keep_in_fp32(model, _fp32_names(model, "transformers", dtype))
    tokenizer = AutoTokenizer.from_pretrained(path)
    try:
        image_processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError, ImportError, AttributeError):
        image_processor = None
    return VLMTeacher(model, (tokenizer, image_processor), config=reward_config)
