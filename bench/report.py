"""Turn a pytest-benchmark JSON into the ratio tables of bench/RESULTS.md.

Usage: python bench/report.py bench/lora.json [more.json ...]

For each group of benchmarks that share a `provider` extra_info (e.g. base | peft | fused), prints the median time of
each provider and the ratios that the targets are stated in: peft / fused (speed-up over PEFT) and fused / base
(overhead over the frozen layer alone).
"""

import json
import sys
from collections import defaultdict


def rows(paths):
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        machine = data.get("machine_info", {})
        for b in data["benchmarks"]:
            yield machine, b


def main(paths) -> int:
    groups = defaultdict(dict)
    machine = {}
    for machine, b in rows(paths):
        info = b.get("extra_info", {})
        if "provider" in info:
            groups[b["group"]][info["provider"]] = (b["stats"]["median"], info)
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    print(f"machine: {machine.get('node', '?')}, {cpu}, {machine.get('cpu', {}).get('count', '?')} cores\n")
    print("| case | base ms | peft ms | fused ms | peft/fused | fused/base | saved MiB peft / fused |")
    print("|---|---|---|---|---|---|---|")
    for group in sorted(groups):
        p = groups[group]
        if not {"base", "peft", "fused"} <= p.keys():
            continue
        t = {k: v[0] * 1e3 for k, v in p.items()}
        saved = {k: v[1].get("saved_bytes", 0) / 2**20 for k, v in p.items()}
        print(f"| {group} | {t['base']:.2f} | {t['peft']:.2f} | {t['fused']:.2f} | {t['peft'] / t['fused']:.2f}x "
              f"| {t['fused'] / t['base']:.2f}x | {saved['peft']:.1f} / {saved['fused']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
