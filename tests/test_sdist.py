"""The source distribution carries every source any build needs, whatever machine makes it (docs/packaging.md).

The checks themselves live in scripts/sdist.py, which CI's sdist stage (.ci/sdist) also runs on the archive it
publishes; these tests build an sdist the same way (setuptools' PEP 517 hook, a few seconds, offline) and also check
the essentials here by name, so that a broken checker cannot pass a broken archive.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("sdist_tool", os.path.join(ROOT, "scripts", "sdist.py"))
sdist_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sdist_tool)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    # Forcing the CUDA build on a CPU machine must not change the archive (nor fail it): an sdist configures nothing.
    env = dict(os.environ, VLMTEACH_BUILD_CUDA="1")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sdist.py"), "build", "--outdir", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}


def test_sdist_carries_every_source(sdist):
    assert sdist_tool.sdist_problems(sdist) == []
    members = _members(sdist)
    for name in ("csrc/lora_cpu.cpp", "csrc/lora_cuda.cu", "csrc/lora_cuda_ops.cpp", "LICENSE", "README.md",
                 "MANIFEST.in", "vlmteach_fast/toy/weights/teacher/model.safetensors",
                 "vlmteach_fast/toy/weights/video/transformer/diffusion_pytorch_model.safetensors"):
        assert name in members, f"{name} is not in {os.path.basename(sdist)}"
    kernel = members["vlmteach_fast/kernels/lora.py"]
    assert kernel.isfile(), "the Triton kernel must be stored as a file, not as the checkout's symbolic link"
    with tarfile.open(sdist) as tar:
        carried = tar.extractfile(f"{os.path.basename(sdist)[:-len('.tar.gz')]}/vlmteach_fast/kernels/lora.py").read()
    with open(os.path.join(ROOT, "kernels", "lora.py"), "rb") as fh:
        assert carried == fh.read()
    assert not any(n.endswith((".so", ".pyc")) for n in members)


def test_license_is_apache_2(sdist):
    with open(os.path.join(ROOT, "LICENSE")) as fh:
        text = fh.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_a_source_left_out_of_the_manifest_fails_the_check(tmp_path):
    # The CUDA sources reach the archive through MANIFEST.in alone: without its `graft csrc` a CPU machine packs
    # only the CPU extension's source, and the checker must say so.
    tree = tmp_path / "tree"
    sdist_tool.copy_clone(ROOT, str(tree))
    manifest = tree / "MANIFEST.in"
    lines = manifest.read_text().splitlines()
    assert "graft csrc" in lines
    manifest.write_text("\n".join(line for line in lines if line != "graft csrc") + "\n")
    path = sdist_tool.build(str(tmp_path / "dist"), root=str(tree))
    problems = sdist_tool.sdist_problems(path, root=str(tree))
    assert "csrc/lora_cuda.cu is missing" in problems and "csrc/lora_cuda_ops.cpp is missing" in problems


def test_a_link_stored_as_a_link_fails_the_check(tmp_path, sdist):
    # Repack the archive with the kernel as a symbolic link, as a tool that does not resolve links would.
    bad = tmp_path / os.path.basename(sdist)
    with tarfile.open(sdist) as src, tarfile.open(bad, "w:gz") as dst:
        for member in src.getmembers():
            if member.name.endswith("vlmteach_fast/kernels/lora.py"):
                member.type, member.linkname, member.size = tarfile.SYMTYPE, "../../kernels/lora.py", 0
                dst.addfile(member)
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    assert any("kernels/lora.py is stored as a link" in p for p in sdist_tool.sdist_problems(str(bad)))


def test_wheel_from_the_sdist_carries_the_kernels(tmp_path, sdist):
    # Without the CPU extension (its compile takes ~35 s; CI's sdist stage builds and checks it): the Triton kernel
    # and the toy weights must reach the wheel as files.
    env = dict(os.environ, VLMTEACH_BUILD_CPU="0", VLMTEACH_BUILD_CUDA="0")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), sdist], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    assert sdist_tool.wheel_problems(str(tmp_path / wheel)) == []
    assert any("_C_cpu" in p for p in sdist_tool.wheel_problems(str(tmp_path / wheel), cpu_ext=True))
    with zipfile.ZipFile(tmp_path / wheel) as whl:
        with open(os.path.join(ROOT, "kernels", "lora.py"), "rb") as fh:
            assert whl.read("vlmteach_fast/kernels/lora.py") == fh.read()


def _setup_py_without_torch(env_flag):
    # What an isolated build sees: torch is not importable (it is not a build requirement).
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--version']; "
            "runpy.run_path('setup.py', run_name='__main__')")
    env = dict(os.environ, VLMTEACH_BUILD_CUDA=env_flag)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_setup_without_torch_builds_no_extension_and_says_why():
    proc = _setup_py_without_torch("auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch is not importable in the build environment: building no extensions" in proc.stderr
    assert "--no-build-isolation" in proc.stderr


def test_setup_without_torch_refuses_a_forced_cuda_build():
    proc = _setup_py_without_torch("1")
    assert proc.returncode != 0
    assert "VLMTEACH_BUILD_CUDA=1 but torch is not importable" in proc.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_copy_clone_keeps_the_link_and_leaves_build_outputs_out(tmp_path):
    tree = tmp_path / "tree"
    sdist_tool.copy_clone(ROOT, str(tree))
    assert os.path.islink(tree / "vlmteach_fast" / "kernels" / "lora.py")
    assert not list(tree.glob("vlmteach_fast/_C_*.so")) and not list(tree.glob("*.egg-info"))
    # Outside git (a copied tree, as on a lent GPU machine) the walk leaves out the same build outputs.
    (tree / "vlmteach_fast.egg-info").mkdir()
    (tree / "vlmteach_fast.egg-info" / "SOURCES.txt").write_text("csrc/lora_cuda.cu\n")
    (tree / "vlmteach_fast" / "_C_cpu.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    copy = tmp_path / "copy"
    sdist_tool.copy_clone(str(tree), str(copy))
    assert os.path.islink(copy / "vlmteach_fast" / "kernels" / "lora.py")
    assert (copy / "csrc" / "lora_cuda.cu").is_file()
    assert not list(copy.glob("vlmteach_fast/_C_*.so")) and not list(copy.glob("*.egg-info"))
