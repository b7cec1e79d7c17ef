"""Import a script from bench/ or scripts/ (not packages) as a module, for tests of its pure parts."""

import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")


def bench_module(name: str, folder: str = BENCH):
    """``bench/<name>.py`` (or ``<folder>/<name>.py``) imported as module ``name`` (cached in sys.modules)."""
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def script_module(name: str):
    """``scripts/<name>.py`` imported as module ``name``."""
    return bench_module(name, os.path.join(ROOT, "scripts"))
