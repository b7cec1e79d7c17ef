"""Make the source distribution from what a fresh clone holds, and check an sdist or a wheel for what it must carry.

    python scripts/sdist.py build --outdir DIR [--isolated]   # prints the archive's path on its last line
    python scripts/sdist.py check dist/vlmteach_fast-0.1.0.tar.gz
    python scripts/sdist.py check wheels/vlmteach_fast-*.whl --cpu-ext [--cuda-ext]

``build`` copies the files git tracks (and untracked files it does not ignore) into a temporary folder first:
setuptools adds to an sdist every file named in a stale ``*.egg-info/SOURCES.txt`` it finds, so an archive made in a
working tree where an earlier sdist or ``setup.py`` run on a GPU machine listed the CUDA sources would carry them
whatever MANIFEST.in says. Without ``--isolated`` it calls setuptools' PEP 517 hook in this Python (what ``python -m build
--sdist --no-isolation`` calls; needs nothing beyond setuptools, works offline); with it, ``python -m build --sdist``
in its own build environment, the command a release is made with. Background: docs/packaging.md.
"""

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "vlmteach_fast"
# Outside git (a copied tree), these are what a fresh clone would not have: build outputs, environments, caches.
_NOT_IN_A_CLONE = (".git", ".venv", ".ci-venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis",
                   ".benchmarks", "*.egg-info", "*.so", "*.pyc")


def clone_files(root: str = ROOT) -> list:
    """Relative paths a fresh clone of ``root`` would hold (plus untracked files git does not ignore)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout
        names = sorted({n for n in out.decode().split("\0") if n})
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk it, skipping what no clone has
        names = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not _ignored(d)]
            names += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if not _ignored(f)]
    # A tracked file deleted in the working tree is not there to copy.
    return [n for n in names if os.path.lexists(os.path.join(root, n))]


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _NOT_IN_A_CLONE)


def copy_clone(root: str, dest: str) -> None:
    """Copy ``clone_files(root)`` to ``dest``, symbolic links as links (the sdist must resolve them itself)."""
    for name in clone_files(root):
        src, dst = os.path.join(root, name), os.path.join(dest, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def build(outdir: str, isolated: bool = False, root: str = ROOT) -> str:
    """Build the sdist of ``root`` as a fresh clone would; return the archive's path (in ``outdir``)."""
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vlmteach-sdist-") as tmp:
        src, made = os.path.join(tmp, "src"), os.path.join(tmp, "dist")
        copy_clone(root, src)
        if isolated:
            cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", made, src]
        else:
            cmd = [sys.executable, "-c", "import sys; from setuptools import build_meta; "
                                         "build_meta.build_sdist(sys.argv[1])", made]
        proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
        if proc.returncode != 0:  # the build's own log only when it failed: it lists every file copied
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"building the sdist failed (exit {proc.returncode}): {' '.join(cmd)}")
        archives = [n for n in os.listdir(made) if n.endswith(".tar.gz")]
        if len(archives) != 1:
            raise SystemExit(f"expected one sdist from {' '.join(cmd[:3])}, found {archives}")
        path = os.path.join(outdir, archives[0])
        shutil.move(os.path.join(made, archives[0]), path)
    return path


def _linked_modules(root: str) -> dict:
    """Package paths that are symbolic links in the checkout -> the bytes of the file they point to."""
    linked = {}
    for dirpath, _, filenames in os.walk(os.path.join(root, PACKAGE)):
        for f in filenames:
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                with open(path, "rb") as fh:
                    linked[os.path.relpath(path, root).replace(os.sep, "/")] = fh.read()
    return linked


def _files_under(root: str, folder: str) -> list:
    return [n for n in clone_files(root) if n.replace(os.sep, "/").startswith(folder + "/")]


def sdist_problems(path: str, root: str = ROOT) -> list:
    """What the sdist at ``path`` lacks or carries wrongly, compared with the checkout at ``root``; [] when sound.

    Every build configuration's sources (all of csrc/, C++ and CUDA), every file of the package folder (modules, the
    toy weights), the Triton kernels among them as regular files with the checkout's content (they are symbolic
    links there), README, LICENSE and the build files; no links, no compiled files.
    """
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        top = members[0].name.split("/")[0]
        by_name = {m.name[len(top) + 1:]: m for m in members if m.name.startswith(top + "/")}
        problems = []
        required = ["README.md", "LICENSE", "MANIFEST.in", "pyproject.toml", "setup.py", "PKG-INFO"]
        required += _files_under(root, "csrc") + _files_under(root, PACKAGE)
        for name in required:
            if name not in by_name:
                problems.append(f"{name} is missing")
        for name, content in _linked_modules(root).items():
            member = by_name.get(name)
            if member is None:
                problems.append(f"{name} (a link in the checkout) is missing")
            elif not member.isfile():
                problems.append(f"{name} is stored as a {'link' if member.issym() or member.islnk() else 'non-file'}"
                                f", not as the file it points to")
            elif tar.extractfile(member).read() != content:
                problems.append(f"{name} differs from the file its link points to in the checkout")
        for name, member in by_name.items():
            if member.issym() or member.islnk():
                problems.append(f"{name} is a link (pip and other unpackers may drop or refuse it)")
            if name.endswith((".so", ".pyd", ".o", ".pyc")):
                problems.append(f"{name} is a build output")
    return problems


def wheel_problems(path: str, cpu_ext: bool = False, cuda_ext: bool = False, root: str = ROOT) -> list:
    """What the wheel at ``path`` lacks: any file of the package folder (the Triton kernels as files, the toy
    weights), and the compiled extensions asked for."""
    with zipfile.ZipFile(path) as whl:
        names = set(whl.namelist())
        problems = [f"{n} is missing" for n in _files_under(root, PACKAGE) if n not in names]
        for name, content in _linked_modules(root).items():
            if name not in names:
                problems.append(f"{name} is missing")
            elif whl.read(name) != content:
                problems.append(f"{name} differs from the file its link points to in the checkout")
    for wanted, ext in ((cpu_ext, "_C_cpu"), (cuda_ext, "_C_cuda")):
        if wanted and not any(n.startswith(f"{PACKAGE}/{ext}.") and n.endswith((".so", ".pyd")) for n in names):
            problems.append(f"{PACKAGE}/{ext} (compiled extension) is missing")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the sdist from the files a fresh clone holds; print its path")
    b.add_argument("--outdir", required=True)
    b.add_argument("--isolated", action="store_true", help="python -m build --sdist (needs `build` and an index)")
    c = sub.add_parser("check", help="check an sdist (.tar.gz) or a wheel (.whl)")
    c.add_argument("path")
    c.add_argument("--cpu-ext", action="store_true", help="a wheel must carry the C++ CPU extension")
    c.add_argument("--cuda-ext", action="store_true", help="a wheel must carry the CUDA extension")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build(args.outdir, isolated=args.isolated))
        return 0
    if args.path.endswith(".whl"):
        problems = wheel_problems(args.path, cpu_ext=args.cpu_ext, cuda_ext=args.cuda_ext)
    else:
        problems = sdist_problems(args.path)
    for p in problems:
        print(f"{os.path.basename(args.path)}: {p}", file=sys.stderr)
    print(f"{os.path.basename(args.path)}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
