"""Running from the repository root (``python -m pytest``, ``python -m vlmteach_fast``) puts the root on ``sys.path``;
nothing there may hide an installed package. transformers imports the hub's ``kernels`` package, and the project keeps
its Triton sources in a top-level ``kernels/`` folder, so that folder must not be a regular package."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_from_root(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_root_kernels_folder_is_no_regular_package():
    # A regular package (or a module of that name) at the root wins over any installed one; a folder without an
    # __init__.py is at most a namespace portion, and the import system prefers a regular package found anywhere.
    assert os.path.isdir(os.path.join(ROOT, "kernels"))
    for shadow in ("kernels/__init__.py", "kernels.py"):
        assert not os.path.exists(os.path.join(ROOT, shadow)), f"{shadow} makes the root importable as `kernels`"


def test_kernels_from_the_root_is_the_installed_package():
    probe = (
        "import importlib.util, json, os, sys\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "origin = None if spec is None else spec.origin\n"
        "paths = [] if spec is None else list(spec.submodule_search_locations or [])\n"
        "print(json.dumps({'cwd_on_path': os.getcwd() in [os.path.abspath(p or '.') for p in sys.path],\n"
        "                  'origin': origin, 'paths': paths}))\n"
    )
    proc = _run_from_root("-c", probe)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["cwd_on_path"], "the probe must see the root on sys.path, as `python -m` does"
    if importlib.util.find_spec("kernels") is not None and found["origin"]:
        # An installed `kernels` (transformers >= 5.25 depends on it) is what the root resolves to.
        root_kernels = os.path.realpath(os.path.join(ROOT, "kernels"))
        assert not os.path.realpath(found["origin"]).startswith(root_kernels + os.sep), found
    else:
        # Not installed: the root folder may only be an empty namespace portion, never a module with code.
        assert found["origin"] in (None, "namespace"), found


def test_transformers_hub_kernels_integration_imports_from_the_root():
    pytest.importorskip("kernels")
    if importlib.util.find_spec("transformers.integrations.hub_kernels") is None:
        pytest.skip("this transformers has no hub-kernels integration")
    proc = _run_from_root("-c", "import kernels, transformers.integrations.hub_kernels; print(kernels.__file__)")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_python_m_vlmteach_fast_help_from_the_root():
    proc = _run_from_root("-m", "vlmteach_fast", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage" in proc.stdout.lower()
