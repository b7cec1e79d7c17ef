"""summary.md and summary.json of a bench/gpu_check.sh output folder: every step's status and its figures.

    python bench/gpu_summary.py gpu_check_out [--dry-run]

Reads steps.jsonl (written by gpu_check.sh) and the steps' result files (step2_pytest.xml, step3_lora.json,
step4_step.json, step5_variants.json, step6_attention.json). A step that did not run, failed or timed out is listed
with its status and the tail of its log; its figures are whatever its result file holds (gpu_step.py writes after
every run, so a timeout keeps the runs that finished). The issue's targets are judged only on a real (not dry) run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET

TITLES = {
    1: "CUDA torch, CUDA extension build, doctor",
    2: "pytest -m cuda (CUDA/Triton kernels, teacher CUDA vs CPU)",
    3: "fused LoRA vs PEFT vs base, fwd+bwd",
    4: "optimize step vs Best-of-N candidate, Wan2.2-5B + Qwen2.5-VL-7B shapes",
    5: "the step with block checkpointing and k-step (K=2)",
    6: "attention backends, denoiser fwd and fwd+bwd",
    7: "the planner's settings for one 80 GB card, next to its predictions",
}
STEP_PHASES = ("predict", "light_decode", "reward_fwd", "reward_bwd", "denoiser_bwd", "optimizer")
CANDIDATE_PHASES = ("sample_4step", "full_decode", "reward_score")
LORA_TARGET = dict(tokens=16384, features=3072, dtype="torch.bfloat16")  # fused >= 1.3x PEFT, <= 1.10x base


def _load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _tail(path: str, n: int = 12) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-n:]]
    except OSError:
        return []


def _gib(b) -> str:
    return "-" if b is None else f"{b / 2**30:.2f} GiB" if b >= 2**28 else f"{b / 2**20:.2f} MiB"


def _verdict(v) -> str:
    return "not judged" if v is None else ("met" if v else "MISSED")


def pytest_counts(path: str) -> dict | None:
    """{tests, failures, errors, skipped} of a junit XML file, or None."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def lora_rows(data: dict) -> list[dict]:
    """One row per (tokens, features, rank, dtype, mode): median seconds, TFLOP/s, GB/s per provider, and
    fused speed-up over PEFT (peft / fused) and overhead over the frozen base (fused / base)."""
    rows: dict[tuple, dict] = {}
    for b in data.get("benchmarks", []):
        i = b.get("extra_info", {})
        key = (i.get("tokens"), i.get("features"), i.get("rank"), i.get("dtype"), i.get("mode"))
        row = rows.setdefault(key, dict(zip(("tokens", "features", "rank", "dtype", "mode"), key)))
        p = i.get("provider")
        row[f"{p}_ms"] = b["stats"]["median"] * 1e3
        row[f"{p}_tflops"] = i.get("tflops")
        row[f"{p}_gbps"] = i.get("gbps")
        if p == "fused":
            row["fused_backend"] = i.get("backend")
    for row in rows.values():
        if "fused_ms" in row and "peft_ms" in row:
            row["fused_vs_peft_speedup"] = row["peft_ms"] / row["fused_ms"]
        if "fused_ms" in row and "base_ms" in row:
            row["fused_over_base"] = row["fused_ms"] / row["base_ms"]
    return sorted(rows.values(), key=lambda r: tuple(str(v) for v in r.values())[:5])


def planned_section(out: str, summary: dict) -> list[str]:
    """Step 7: each geometry's measured peak and step / candidate beside the plan's (bench/plan_predictions.json)."""
    md = [f"## Step 7: {TITLES[7]}\n"]
    pred = _load_json(os.path.join(os.path.dirname(os.path.abspath(__file__)), "plan_predictions.json")) or {}
    rows = []
    for geo, p in (pred.get("geometries") or {}).items():
        data = _load_json(os.path.join(out, f"step7_{geo}.json"))
        run = (data or {}).get("runs", [{}])[0] if data else {}
        if "step_seconds" in run:
            rows.append(dict(geometry=geo, settings=p["settings"], peak_predicted_gib=p["peak_gib"],
                             peak_measured_gib=run["peak_bytes"] / 2**30, ratio_predicted=p["step_over_candidate"],
                             ratio_measured=run["step_over_candidate"]))
            md.append(f"- {geo} {p['settings']}: peak predicted {p['peak_gib']:.1f} GiB, measured "
                      f"{_gib(run['peak_bytes'])}; step / candidate predicted {p['step_over_candidate']:.2f} (H100 "
                      f"rates), measured {run['step_over_candidate']:.2f}")
        else:
            md.append(f"- {geo}: {run.get('error', 'no result file')[:200]}")
    summary["steps"].setdefault(7, {})["planned"] = rows
    return md + [""]


def summarize(out: str, dry: bool) -> tuple[dict, str]:
    steps = {}
    for line in _tail(os.path.join(out, "steps.jsonl"), 100):
        if line.strip():
            rec = json.loads(line)
            steps[int(rec["step"])] = rec
    env = None
    summary = {"dry_run": dry, "steps": {}}
    md = ["# GPU check summary\n"]
    if dry:
        md.append("**Dry run**: tiny shapes on the CPU; the CUDA torch install and the CUDA build were skipped. "
                  "Nothing here is a GPU figure, and no target is judged.\n")
    md += ["| step | what | status | seconds | limit s | log |", "|---|---|---|---|---|---|"]
    for n, title in TITLES.items():
        rec = steps.get(n, {"status": "not run"})
        md.append(f"| {n} | {title} | {rec['status']} | {rec.get('seconds', '-')} | {rec.get('limit_s', '-')} | "
                  f"{rec.get('log', '-')} |")
        summary["steps"][n] = dict(rec, title=title)
    md.append("")

    # 1
    md.append("## Step 1: CUDA torch, extension build, doctor\n")
    md += ["```", *_tail(os.path.join(out, "step1.log"), 14), "```", ""]
    # 2
    counts = pytest_counts(os.path.join(out, "step2_pytest.xml"))
    summary["steps"][2]["pytest"] = counts
    md.append("## Step 2: pytest -m cuda\n")
    md.append(f"- {counts}" if counts else "- no junit result")
    md += ["", "```", *_tail(os.path.join(out, "step2.log"), 8), "```", ""]
    # 3
    md.append("## Step 3: fused LoRA vs PEFT vs the frozen base (fwd+bwd)\n")
    data = _load_json(os.path.join(out, "step3_lora.json"))
    if data:
        env = (data.get("machine_info") or {}).get("vlmteach_fast")
        rows = lora_rows(data)
        summary["steps"][3]["rows"] = rows
        md += ["| tokens | features | rank | dtype | mode | base ms | peft ms | fused ms | fused TFLOP/s | fused GB/s |"
               " fused vs PEFT | fused / base | fused backend |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            def f(k, fmt="{:.3f}"):
                return fmt.format(r[k]) if r.get(k) is not None else "-"
            md.append(f"| {r['tokens']} | {r['features']} | {r['rank']} | {r['dtype']} | {r['mode']} | "
                      f"{f('base_ms')} | {f('peft_ms')} | {f('fused_ms')} | {f('fused_tflops', '{:.3g}')} | "
                      f"{f('fused_gbps', '{:.3g}')} | {f('fused_vs_peft_speedup', '{:.2f}x')} | "
                      f"{f('fused_over_base', '{:.3f}')} | {r.get('fused_backend', '-')} |")
        target = [r for r in rows if all(r.get(k) == v for k, v in LORA_TARGET.items()) and r["mode"] == "full"]
        for r in target:
            ok_peft = None if dry else r.get("fused_vs_peft_speedup", 0) >= 1.3
            ok_base = None if dry else r.get("fused_over_base", 99) <= 1.10
            summary["steps"][3].setdefault("targets", []).append(
                {"rank": r["rank"], "fused_ge_1.3x_peft": ok_peft, "fused_le_1.10x_base": ok_base})
            md.append(f"\nTarget at 16384 x 3072 bf16, r{r['rank']}: fused >= 1.3x PEFT: {_verdict(ok_peft)}; "
                      f"fused <= 1.10x base: {_verdict(ok_base)}")
    else:
        md.append("- no result file")
    md.append("")
    # 4, 5
    for n, name in ((4, "step4_step.json"), (5, "step5_variants.json")):
        md.append(f"## Step {n}: {TITLES[n]}\n")
        data = _load_json(os.path.join(out, name))
        if not data:
            md += ["- no result file", ""]
            continue
        env = env or data.get("environment")
        summary["steps"][n]["runs"] = data.get("runs", [])
        md.append(f"- build {data.get('build_seconds', 0):.1f} s, light decoder fit "
                  f"{data.get('light_decoder_fit_seconds', 0):.1f} s, dtype {data.get('dtype')}, LoRA {data.get('lora')}")
        md += ["", "| geometry | variant | " + " | ".join(STEP_PHASES) + " | step s | " +
               " | ".join(CANDIDATE_PHASES) + " | candidate s | step / candidate | best_of_n:5 steps (seconds cap / evals cap) | peak |",
               "|---" * (len(STEP_PHASES) + len(CANDIDATE_PHASES) + 7) + "|"]
        for r in data.get("runs", []):
            if "error" in r:
                md.append(f"| {r.get('geometry_name')} | {r['variant']} | error: {r['error'][:200]} |")
                continue
            g = r["geometry"]
            geo = f"{r['geometry_name']}: {g['height']}x{g['width']}x{g['num_frames']} ({g['denoiser_tokens']} tok)"
            ss, cs = r["step"]["seconds"], r["candidate"]["seconds"]
            md.append(f"| {geo} | {r['variant']} | " + " | ".join(f"{ss[p]:.3f}" for p in STEP_PHASES) +
                      f" | {r['step_seconds']:.3f} | " + " | ".join(f"{cs[p]:.3f}" for p in CANDIDATE_PHASES) +
                      f" | {r['candidate_seconds']:.3f} | {r['step_over_candidate']:.2f} | "
                      f"{r['steps_best_of_5_budget']} ({r['steps_best_of_5_seconds_cap']} / "
                      f"{r['steps_best_of_5_evals_cap']}) | {_gib(r['peak_bytes'])} |")
        for r in data.get("runs", []):
            if "error" not in r:
                md.append(f"\n{r.get('geometry_name')} {r['variant']}: step <= 1/3 candidate: "
                          f"{_verdict(r['target_step_le_third_candidate'])}; 16 steps + final <= Best-of-5: "
                          f"{_verdict(r['target_16_steps_plus_final_le_best_of_5'])}; fits 80 GB: "
                          f"{_verdict(r['target_fits_80GB'])}")
        md.append("\nPeak memory: " + ("torch.cuda.max_memory_allocated per phase (weights included)"
                                       if not dry else "bytes of tensors created in the phase (CPU; weights excluded)"))
        md.append("")
    md += planned_section(out, summary)
    # 6
    md.append(f"## Step 6: {TITLES[6]}\n")
    data = _load_json(os.path.join(out, "step6_attention.json"))
    if data:
        summary["steps"][6]["backends"] = data.get("backends", [])
        summary["steps"][6]["best"] = data.get("best")
        md += ["| backend | status | fwd ms | fwd+bwd ms | fwd+bwd peak | note |", "|---|---|---|---|---|---|"]
        for b in data.get("backends", []):
            if b["status"] == "ok":
                md.append(f"| {b['backend']} | ok | {b['fwd_seconds'] * 1e3:.1f} | {b['fwd_bwd_seconds'] * 1e3:.1f} |"
                          f" {_gib(b['fwd_bwd_peak_bytes'])} | |")
            else:
                md.append(f"| {b['backend']} | {b['status']} | - | - | - | {b['reason'][:160]} |")
        md.append(f"\nFastest fwd+bwd: {data.get('best')}" + (" (dry run: not a measurement)" if dry else ""))
    else:
        md.append("- no result file")
    md.append("")
    for n in TITLES:
        rec = steps.get(n)
        if rec and rec["status"] != "ok":
            md += [f"## Step {n} {rec['status']}: last lines of {rec['log']}\n", "```",
                   *_tail(os.path.join(out, rec["log"]), 20), "```", ""]
    if env:
        summary["environment"] = env
        md.insert(1, f"Device: {env.get('device') or ', '.join(env.get('gpus', [])) or 'cpu'}; torch "
                     f"{env.get('torch')} (CUDA {env.get('cuda')}), Triton {env.get('triton')}\n")
    return summary, "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the gpu_check.sh output folder")
    ap.add_argument("--dry-run", action="store_true", help="the folder holds a dry run (no target is judged)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.out):
        ap.error(f"not a folder: {args.out!r}")
    summary, md = summarize(args.out, args.dry_run)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
