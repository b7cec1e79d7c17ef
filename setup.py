"""Build vlmteach_fast: Python packages plus optional compiled extensions.

What is built (each part is optional; import works without any of them, see vlmteach_fast/_ext.py):

* ``vlmteach_fast._C_cpu``  C++ CPU kernels (OpenMP), built on every machine with a C++ compiler.
* ``vlmteach_fast._C_cuda`` CUDA kernels, built when a CUDA toolkit (nvcc, CUDA_HOME) and a CUDA build of torch
  are both present.

Environment variables (values 0 / 1 / auto, default auto):

* ``VLMTEACH_BUILD_CPU``   0 skips the C++ CPU extension; 1 makes a failure to build it an error.
* ``VLMTEACH_BUILD_CUDA``  0 skips the CUDA extension; 1 forces it (error when no toolkit / CPU-only torch).
* ``VLMTEACH_CUDA_ARCHS``  e.g. "8.0;9.0" (default: TORCH_CUDA_ARCH_LIST, else "8.0;8.6;9.0").

An extension loads only with the torch it was compiled against, so install torch first and build with
``pip install --no-build-isolation .``. torch is not a build requirement (pyproject.toml): an isolated build would
compile against a second, unpinned torch in its build environment (a multi-GB CUDA build). An isolated build has no
torch, builds no extension, says so, and the package runs on its Triton and plain-torch paths. Making an sdist
configures no extension: MANIFEST.in lists every source. Details: docs/packaging.md.
"""

import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> str:
    value = os.environ.get(name, "auto").strip().lower()
    if value not in ("0", "1", "auto"):
        raise SystemExit(f"{name} must be 0, 1 or auto, got {value!r}")
    return value


def _say(msg: str) -> None:
    print(f"[vlmteach_fast setup] {msg}", file=sys.stderr)


def _extensions():
    """Return (ext_modules, cmdclass) for the parts this machine can build; say what is skipped and why."""
    if "sdist" in sys.argv[1:]:
        # The archive carries the sources of every extension (MANIFEST.in), not those this machine would build.
        _say("making a source distribution: no extension is configured (MANIFEST.in lists every source).")
        return [], {}
    build_cpu, build_cuda = _flag("VLMTEACH_BUILD_CPU"), _flag("VLMTEACH_BUILD_CUDA")
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        forced = [name for name, value in (("VLMTEACH_BUILD_CPU", build_cpu), ("VLMTEACH_BUILD_CUDA", build_cuda))
                  if value == "1"]
        hint = ("install torch first and build with `pip install --no-build-isolation ...` (an isolated build "
                "has no torch: it is not a build requirement, see docs/packaging.md)")
        if forced:
            raise SystemExit(f"{' and '.join(f'{n}=1' for n in forced)} but torch is not importable in the build "
                             f"environment: {hint}.")
        _say(f"torch is not importable in the build environment: building no extensions; {hint}.")
        return [], {}

    exts = []
    cxx = ["-O3", "-fopenmp"]
    if build_cpu != "0":
        exts.append(cpp_extension.CppExtension(
            "vlmteach_fast._C_cpu",
            sources=["csrc/lora_cpu.cpp"],
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],  # ATen's parallel primitives inline OpenMP pragmas
        ))
    else:
        _say("VLMTEACH_BUILD_CPU=0: skipping the C++ CPU extension.")

    cuda_ok = cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None
    if build_cuda == "1" and not cuda_ok:
        raise SystemExit(
            "VLMTEACH_BUILD_CUDA=1 but the CUDA extension cannot be built: "
            f"CUDA_HOME={cpp_extension.CUDA_HOME}, torch {torch.__version__} built for CUDA {torch.version.cuda}."
        )
    if build_cuda != "0" and cuda_ok:
        archs = os.environ.get("VLMTEACH_CUDA_ARCHS") or os.environ.get("TORCH_CUDA_ARCH_LIST") or "8.0;8.6;9.0"
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        exts.append(cpp_extension.CUDAExtension(
            "vlmteach_fast._C_cuda",
            sources=["csrc/lora_cuda.cu", "csrc/lora_cuda_ops.cpp"],
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]},
        ))
        _say(f"building the CUDA extension for archs {archs} (CUDA {torch.version.cuda}).")
    elif build_cuda == "0":
        _say("VLMTEACH_BUILD_CUDA=0: skipping the CUDA extension.")
    else:
        _say(f"skipping the CUDA extension: CUDA_HOME={cpp_extension.CUDA_HOME}, "
             f"torch {torch.__version__} (CUDA {torch.version.cuda}); Triton/CPU/reference paths still work.")

    class BuildExt(cpp_extension.BuildExtension):
        """Build each extension; in auto mode a failure is reported and skipped instead of failing the install."""

        def build_extension(self, ext):
            forced = _flag("VLMTEACH_BUILD_CUDA" if "cuda" in ext.name else "VLMTEACH_BUILD_CPU") == "1"
            try:
                super().build_extension(ext)
            except Exception as err:  # noqa: BLE001 - reported, re-raised when forced
                if forced:
                    raise
                _say(f"failed to build {ext.name} ({type(err).__name__}: {err}); the package falls back at run time.")

    return exts, {"build_ext": BuildExt.with_options(use_ninja=False)}


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["vlmteach_fast", "vlmteach_fast.*"]),
    package_data={"vlmteach_fast": ["**/*.safetensors", "**/*.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
