"""Config files (YAML or JSON) -> ``OptimizeConfig`` and method options, with unknown keys rejected by name.

A file looks like::

    max_steps: 16
    lr: 0.002
    budget: best_of_n:5
    lora: {rank: 16, alpha: 16}
    decoder: {kind: auto, frames: all}    # or {kind: tiny, path: taew2_2.safetensors}
    sampling: {num_frames: 17, final_steps: 4, seed: 0}
    n: 5          # best_of_n only
    rounds: 0     # vlm_as_solver only
    reward: {checkpoint_layers: true, process_frames: 4}   # the teacher's RewardConfig
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from .checks import check_int
from .cost import Budget
from .instance import SamplingConfig
from .methods import METHOD_OPTIONS
from .optimization import OptimizeConfig
from .reasoner import LightDecoderConfig, LoRASpec

__all__ = ["load_config", "METHOD_OPTIONS"]

_NESTED = {"lora": LoRASpec, "decoder": LightDecoderConfig, "sampling": SamplingConfig, "budget": Budget}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping of {cls.__name__} fields, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for k, v in data.items():
        if k in _NESTED and isinstance(v, dict) and cls is OptimizeConfig:
            v = _build(_NESTED[k], v, f"{where}.{k}")
        elif isinstance(v, list) and k in ("target_modules",):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


# YAML 1.1 (PyYAML) reads a float only with a dot: `lr: 1e-3` came back as the string "1e-3" and was refused. YAML 1.2
# and JSON read it as a number; so does this loader. Quoted values stay strings.
_FLOAT_1_2 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):  # a subclass: PyYAML's own SafeLoader is left as it is
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))
    return Loader


def load_config(source=None) -> tuple[OptimizeConfig, dict]:
    """(OptimizeConfig, method options) from a YAML/JSON file path, a dict, or None (defaults).

    Raises ValueError naming the file and the unknown or invalid key; FileNotFoundError for a missing file.
    """
    if source is None:
        return OptimizeConfig(), dict(METHOD_OPTIONS)
    where = "config"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = f"config file {path!r}"
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where} not found")
        with open(path) as f:
            text = f.read()
        if path.endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON at line {err.lineno}, column {err.colno}: "
                                 f"{err.msg}") from None
        else:
            import yaml

            try:
                data = yaml.load(text, Loader=_yaml_loader())  # safe: a SafeLoader, with YAML 1.2 floats
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                what = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"{where}: not valid YAML{at}: {what}") from None
        data = data or {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        raise TypeError(f"config must be a path, a dict or None, got {type(source).__name__}")
    if not isinstance(data, dict):
        raise ValueError(f"{where} must hold a mapping at the top level, got {type(data).__name__}")
    options = dict(METHOD_OPTIONS)
    for k in list(data):
        if k in METHOD_OPTIONS:
            options[k] = data.pop(k)
    try:
        check_int("n", options["n"])  # before any model loads (run_method checks again, for API callers)
        check_int("rounds", options["rounds"], minimum=0)
        if options["reward"] is not None:
            from .teacher import RewardConfig

            _build(RewardConfig, options["reward"], f"{where}: reward")  # checked now; applied to the teacher's own
        return _build(OptimizeConfig, data, where), options
    except (TypeError, ValueError) as err:
        if str(err).startswith(where):
            raise
        raise ValueError(f"{where}: {err}") from err
