"""Turn pytest-benchmark JSON into the tables of bench/RESULTS.md (same as ``vlmteach-fast bench-report``).

Usage: python bench/report.py bench/results.json --reference peft,base [--out FILE.md]
"""

import sys

from vlmteach_fast.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-report", *sys.argv[1:]]))
