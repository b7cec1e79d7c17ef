"""Import a script from bench/ (not a package) as a module, for tests of its pure parts."""

import importlib
import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def bench_module(name: str):
    """``bench/<name>.py`` imported as module ``name`` (cached in sys.modules like any import)."""
    sys.path.insert(0, BENCH)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)
