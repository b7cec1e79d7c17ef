"""pytest-benchmark JSON -> markdown tables (the source of bench/RESULTS.md's throughput figures) (``vlmteach-fast bench-report``).

The whole throughput suite, then the report::

    python -m pytest bench/ --benchmark-only --benchmark-json=bench/results.json
    vlmteach-fast bench-report bench/results.json --out bench/report.md

Quick mode (CI; each benchmark function runs once, as a plain test, no timing)::

    python -m pytest bench/ -q --benchmark-disable

Tables: one per ``benchmark.group``; a row per benchmark with its ``extra_info["provider"]`` (or the test's name),
median / mean / stddev / rounds, and the speed-up against a reference provider: ``extra_info["reference"]`` when the
benchmark names one, else ``--reference`` (one or more, comma-separated). Speed-up = median(reference) /
median(this), so > 1 is faster.

Versions: pytest-benchmark records the machine (CPU, Python) but not torch / Triton / CUDA. Put
``from vlmteach_fast.evaluate.throughput import pytest_benchmark_update_machine_info`` in bench/conftest.py to record
them in the JSON; otherwise the report states the versions of the machine that ran the report, and says so.
"""

from __future__ import annotations

import json
import os
import platform

__all__ = ["environment_info", "pytest_benchmark_update_machine_info", "load_benchmarks", "throughput_markdown"]

_SKIP_INFO = ("provider", "reference")


def environment_info() -> dict:
    """torch / CUDA / Triton versions, GPU names and the backend each op would use (from ``_ext`` and dispatch)."""
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda or "none", "python": platform.python_version()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        from .. import _ext

        info["backends"] = {b.name: ("ok" if b.ok else "no") + f" ({b.reason})" for b in _ext.backends().values()}
    except Exception as err:  # noqa: BLE001 - a report must not die because an extension probe did
        info["backends"] = {"error": str(err)}
    return info


def pytest_benchmark_update_machine_info(config, machine_info):
    """pytest-benchmark hook: adds ``environment_info()`` under ``machine_info["vlmteach_fast"]``."""
    machine_info["vlmteach_fast"] = environment_info()


# what the tables read of each benchmark's "stats"
STATS_KEYS = ("median", "mean", "stddev", "rounds")


def load_benchmarks(paths) -> tuple[dict, list[dict]]:
    """(machine_info of the first file, every benchmark of every file). Raises ValueError naming a bad file."""
    machine, benches = None, []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"benchmark JSON not found: {path!r}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            raise ValueError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list); write one with "
                             "--benchmark-json=FILE")
        machine = machine if machine is not None else data.get("machine_info", {})
        for i, b in enumerate(data["benchmarks"]):
            stats = b.get("stats") if isinstance(b, dict) else None
            missing = [k for k in STATS_KEYS if not isinstance(stats, dict) or k not in stats]
            if missing or "name" not in b:
                label = b.get("name", i) if isinstance(b, dict) else i
                lacks = f"stats {missing}" if missing else "a name"
                raise ValueError(f"{path}: benchmark {label!r} lacks {lacks}; not what pytest --benchmark-json=FILE "
                                 "writes")
            b = dict(b)
            b["_file"] = os.path.basename(path)
            benches.append(b)
    return machine or {}, benches


def _scalar_info(info: dict) -> str:
    parts = []
    for k, v in info.items():
        if k in _SKIP_INFO or isinstance(v, (dict, list)):
            continue
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, int) and k.endswith("bytes"):
            v = f"{v / 2**20:.1f} MiB"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _machine_section(machine: dict) -> list[str]:
    cpu = machine.get("cpu", {}) or {}
    lines = ["## Machine\n",
             f"- host: {machine.get('node', '?')}, {machine.get('machine', '?')}, "
             f"CPU {cpu.get('brand_raw', machine.get('processor', '?'))} ({cpu.get('count', '?')} threads)",
             f"- python {machine.get('python_version', '?')} ({machine.get('python_implementation', '?')})"]
    env = machine.get("vlmteach_fast")
    note = ""
    if not env:
        env = environment_info()
        note = " (not recorded in the JSON: these are the versions of the machine that made this report)"
    lines.append(f"- torch {env.get('torch')}, CUDA {env.get('cuda')}, Triton {env.get('triton')}{note}")
    if env.get("gpus"):
        lines.append(f"- GPUs: {', '.join(env['gpus'])}")
    for name, status in (env.get("backends") or {}).items():
        lines.append(f"- backend {name}: {status}")
    return lines


def throughput_markdown(paths, reference: str | None = None, title: str = "Throughput") -> str:
    """Markdown of the benchmarks in ``paths`` (pytest-benchmark JSON files).

    ``reference``: provider(s), comma-separated, to compute speed-ups against in groups whose benchmarks name none
    in ``extra_info["reference"]`` (e.g. "peft,base": speed-up over PEFT and over the frozen layer alone).
    """
    references = [r.strip() for r in (reference or "").split(",") if r.strip()]
    machine, benches = load_benchmarks(paths)
    out = [f"# {title}\n", *_machine_section(machine), ""]
    groups: dict[str, list[dict]] = {}
    for b in benches:
        groups.setdefault(b.get("group") or "(no group)", []).append(b)
    for group in sorted(groups):
        rows = groups[group]
        medians = {}
        for b in rows:
            prov = (b.get("extra_info") or {}).get("provider")
            if prov is not None:
                medians.setdefault(prov, b["stats"]["median"])
        out += [f"## {group}\n",
                "| benchmark | provider | median ms | mean ms | stddev ms | rounds | speed-up | info |",
                "|---|---|---|---|---|---|---|---|"]
        for b in sorted(rows, key=lambda b: b["stats"]["median"]):
            info, st = b.get("extra_info") or {}, b["stats"]
            refs = [info["reference"]] if "reference" in info else list(references)
            prov = info.get("provider", "-")
            ratio = "; ".join(f"{medians[r] / st['median']:.2f}x vs {r}" for r in refs
                              if r in medians and r != prov and st["median"] > 0) or "-"
            out.append(f"| {b['name']} | {prov} | {1e3 * st['median']:.3f} | {1e3 * st['mean']:.3f} | "
                       f"{1e3 * st['stddev']:.3f} | {st['rounds']} | {ratio} | {_scalar_info(info)} |")
        out.append("")
    return "\n".join(out)
