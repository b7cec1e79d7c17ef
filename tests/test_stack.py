"""`vlmteach-fast doctor`'s stack report: installed versions, and the combinations known to break."""

import importlib.metadata as md
import json
import subprocess
import sys

import pytest

from vlmteach_fast.stack import installed_versions, stack_issues


def test_versions_of_the_stack_are_the_installed_ones():
    versions = installed_versions()
    assert versions["torch"] == md.version("torch") and versions["transformers"] == md.version("transformers")
    assert installed_versions(["no-such-package-here"]) == {"no-such-package-here": None}


def test_a_requirement_the_installed_versions_miss_is_reported():
    needs = [r for r in md.requires("transformers") or [] if r.startswith("tokenizers")]
    if not needs:
        pytest.skip("this transformers does not pin tokenizers")
    issues = stack_issues({"transformers": md.version("transformers"), "tokenizers": "0.0.1"})
    assert [i.package for i in issues] == ["tokenizers"] and "0.0.1" in issues[0].message
    assert stack_issues({"transformers": md.version("transformers"), "tokenizers": md.version("tokenizers")}) == []


def test_a_module_that_hides_an_installed_package_is_reported(tmp_path):
    # A folder with an __init__.py in the working directory comes first on sys.path under `python -c` / `-m`.
    (tmp_path / "safetensors").mkdir()
    (tmp_path / "safetensors" / "__init__.py").write_text("")
    probe = ("import json; from vlmteach_fast.stack import stack_issues, installed_versions\n"
             "print(json.dumps([i.package for i in stack_issues(installed_versions(['safetensors', 'torch']))]))")
    for cwd, expected in ((tmp_path, ["safetensors"]), (tmp_path.parent, [])):
        proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout) == expected


def test_doctor_prints_the_stack():
    proc = subprocess.run([sys.executable, "-m", "vlmteach_fast", "doctor"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"transformers {md.version('transformers')}" in proc.stdout and "not installed:" in proc.stdout
