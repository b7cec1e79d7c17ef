"""The installed stack: versions of the packages vlmteach_fast runs on, and combinations known to break.

``vlmteach-fast doctor`` prints both. The checks read installed metadata only (nothing is imported but
``importlib``): each stack package's own requirements against what is installed (as ``pip check`` does, limited to
the stack), and a module on ``sys.path`` that hides an installed package of the same name.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

__all__ = ["STACK", "StackIssue", "installed_versions", "stack_issues"]

# What the library, its tests and its GPU paths import, in the order doctor prints them.
STACK = ("torch", "triton", "transformers", "kernels", "diffusers", "peft", "accelerate", "safetensors",
         "huggingface_hub", "tokenizers", "numpy", "torchvision", "xformers", "imageio", "imageio-ffmpeg", "ftfy")

# Import names that differ from their distribution's name.
_IMPORT_NAME = {"imageio-ffmpeg": "imageio_ffmpeg", "huggingface_hub": "huggingface_hub"}


@dataclass(frozen=True)
class StackIssue:
    """One combination known to break: ``package`` is what to fix, ``message`` says what breaks and how to fix it."""

    package: str
    message: str


def installed_versions(names=STACK) -> dict[str, str | None]:
    """{distribution name: installed version, or None when it is not installed}."""
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _requirement_issues(versions: dict[str, str | None]) -> list[StackIssue]:
    """Each installed stack package's requirements on other stack packages that the installed versions miss."""
    issues = []
    for name, version in versions.items():
        if version is None:
            continue
        for text in md.requires(name) or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            dep = req.name.lower().replace("_", "-")
            have = next((v for k, v in versions.items() if k.lower().replace("_", "-") == dep), None)
            if have is None or not req.specifier or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
                continue
            try:
                ok = req.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                continue
            if not ok:
                issues.append(StackIssue(req.name, f"{name} {version} requires {req.name}{req.specifier}, installed "
                                                   f"{have}: install a matching pair (docs/dependencies.md)"))
    return issues


def _shadow_issues(versions: dict[str, str | None]) -> list[StackIssue]:
    """An installed package that ``import`` would not reach because a module of the same name comes first on
    ``sys.path`` (a folder with an ``__init__.py`` in the working directory, for example)."""
    issues = []
    for name, version in versions.items():
        if version is None:
            continue
        module = _IMPORT_NAME.get(name, name.replace("-", "_"))
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        owned = {os.path.realpath(f.locate()) for f in md.files(name) or []
                 if f.parts[0] in (module, f"{module}.py")}
        if spec is None or spec.origin is None or not owned:  # not importable, a namespace, or an editable install
            continue
        if os.path.realpath(spec.origin) not in owned:
            issues.append(StackIssue(name, f"`import {module}` finds {spec.origin}, not the installed {name} "
                                           f"{version}: rename that module or run from another folder"))
    return issues


def stack_issues(versions: dict[str, str | None] | None = None) -> list[StackIssue]:
    """The combinations in the installed stack known to break (empty when none)."""
    versions = installed_versions() if versions is None else versions
    return _requirement_issues(versions) + _shadow_issues(versions)
