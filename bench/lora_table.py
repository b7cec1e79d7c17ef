"""Write the measured LoRA backend table the op ships (vlmteach_fast/ops/lora_backends.json) from a bench_lora run.

    python bench/lora_table.py gpu_check_out/step3_lora.json [--table vlmteach_fast/ops/lora_backends.json]
                               [--out FILE]

Takes the fwd+bwd ("full") rows of the backend providers (reference, triton, cuda, compile) and replaces the table's
rows for the device that was measured, keeping other devices' rows. bench/gpu_check.sh step 3 runs it; the op reads
the table through vlmteach_fast.ops.measured (how a backend is chosen from it: that module's docstring).
"""

import argparse
import json
import os
import sys

from vlmteach_fast.io_atomic import atomic_write_json
from vlmteach_fast.ops.measured import TABLE_PATH, parse_rows

BACKEND_PROVIDERS = ("reference", "triton", "cuda", "compile")


def measured_rows(bench: dict) -> list:
    """Table rows (dicts) of the backend providers' fwd+bwd medians in a pytest-benchmark JSON document."""
    rows = []
    for b in bench.get("benchmarks", []):
        i = b.get("extra_info", {})
        if i.get("provider") not in BACKEND_PROVIDERS or i.get("mode") != "full":
            continue
        rows.append(dict(device=i["device"], tokens=i["tokens"], in_features=i["features"],
                         out_features=i["features"], rank=i["rank"], dtype=str(i["dtype"]).removeprefix("torch."),
                         backend=i["provider"], ms=round(b["stats"]["median"] * 1e3, 4)))
    return rows


def merge(table: dict, rows: list) -> dict:
    """The table with its rows for the measured devices replaced by ``rows`` (validated)."""
    devices = {r["device"] for r in rows}
    kept = [r for r in table.get("rows", []) if r["device"] not in devices]
    merged = {"rows": sorted(kept + rows, key=lambda r: (r["device"], r["dtype"], r["rank"], r["in_features"],
                                                        r["tokens"], r["backend"]))}
    parse_rows(merged)  # raises on a malformed row before anything is written
    return merged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_json", help="pytest-benchmark JSON of bench/bench_lora.py")
    ap.add_argument("--table", default=TABLE_PATH, help="table to merge into (default: the shipped one)")
    ap.add_argument("--out", default=None, help="where to write the merged table (default: --table)")
    args = ap.parse_args(argv)
    with open(args.bench_json, encoding="utf-8") as f:
        rows = measured_rows(json.load(f))
    table = {"rows": []}
    if os.path.exists(args.table):
        with open(args.table, encoding="utf-8") as f:
            table = json.load(f)
    merged = merge(table, rows)
    out = args.out or args.table
    atomic_write_json(out, merged)
    print(f"{len(rows)} measured rows for {sorted({r['device'] for r in rows}) or 'no device'} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
