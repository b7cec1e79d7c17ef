"""``vlmteach-fast demo``: the method on the built-in toy world, with the models the project trained and ships.

For each held-out instance: the plain model (one sample), Best-of-5 (the teacher picks) and ``optimize`` capped at
Best-of-5's cost, all with the same teacher, judged by the exact rule scorer. Prints a table like the paper's (rule
score, pass rate, teacher score, seconds per instance), and writes side-by-side GIFs (ground truth | plain | Best-of-5
| optimize), reward curves and an ``index.html`` that shows them. ``run_demo`` is also what the acceptance benchmark
(``bench/toy_acceptance.py``) calls on more instances.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import time
from dataclasses import dataclass, field

import torch

from .checks import check_int
from .cost import keep_freed_memory

__all__ = ["DemoConfig", "run_demo", "DEMO_METHODS", "demo_optimize_config"]

# The demo's column labels and the registry method each one runs (``methods.run_method``).
DEMO_METHODS = {"plain": "baseline", "best_of_5": "best_of_n", "optimize": "optimize"}


# The toy video model's cross-attention projections (diffusers' Wan blocks): the demo's LoRA targets.
DEMO_LORA_TARGETS = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


def demo_optimize_config():
    """``optimize``'s settings in the demo and the toy acceptance benchmark.

    k-step predictions (4 sampling steps, the last 3 under gradient, activations kept: the toy models are small; the
    toy video model is not step-distilled, so the kept prediction is decoded as the final video) through the shipped
    tiny decoder; a rank-8 LoRA on the cross-attention projections only; lr 1.5e-2, the first update 3x larger (a
    fresh adapter's first update moves only ``lora_B``, from 0). No trust region for four steps, a strong one from the
    fifth (``anchor=30, anchor_start=4``: long runs drift into near-solutions the teacher calls all-yes; over 16
    uncapped steps it cuts the fooled rate from 18% to 3%). No plain sample first and no score of the final video
    (``score_final=False``: nothing is decided on it). At best_of_n:5 its rule-score gain is 3.26x Best-of-5's.

    Why these values: docs/method.md, "Demo settings".
    """
    from .optimization import OptimizeConfig
    from .reasoner import LoRASpec

    return OptimizeConfig(mode="k_step", steps=4, grad_steps=3, checkpoint=False, lr=1.5e-2, lr_first=3.0,
                          anchor=30.0, anchor_start=4, max_steps=16,
                          lora=LoRASpec(rank=8, target_modules=DEMO_LORA_TARGETS), score_initial=False,
                          score_final=False, progress=False)


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults run 48 instances (16 per task type, the acceptance benchmark's first block)
    on 2 CPU cores in about 80 s: fewer land either side of Best-of-5 by chance."""

    instances: int = field(default=48, metadata={"help": "held-out instances (spread over the task types)"})
    seed: int = field(default=0, metadata={"help": "which held-out instances (and noise seeds)"})
    out: str = field(default="vlmteach_demo", metadata={"help": "output directory"})
    n: int = field(default=5, metadata={"help": "Best-of-N's N, and optimize's budget in Best-of-N candidates"})
    budgeted: bool = field(default=True, metadata={"help": "cap optimize at Best-of-N's cost (False: max_steps)"})
    unit_costs: dict | None = field(default=None, metadata={
        "help": "recorded unit costs in seconds ({'candidate', 'step', 'evaluation', 'finish'}, as a demo's "
                "results.json records them): the same step plan, so the same scores, on any machine; None: measured"})
    optimize: object = field(default_factory=demo_optimize_config, metadata={
        "help": "OptimizeConfig of optimize; its lora is used by every method, its sampling is set per instance"})
    methods: tuple = field(default=tuple(DEMO_METHODS), metadata={"help": "which methods to run"})
    write_media: bool = field(default=True, metadata={"help": "GIFs, plots and HTML (off for pure benchmarks)"})
    pipeline_path: str | None = field(default=None, metadata={"help": "toy video model folder; None = shipped"})
    teacher_path: str | None = field(default=None, metadata={"help": "toy teacher folder; None = shipped"})

    def __post_init__(self):
        from .optimization import OptimizeConfig

        for name in ("instances", "n"):
            check_int(f"DemoConfig.{name}", getattr(self, name))
        if not isinstance(self.optimize, OptimizeConfig):
            raise TypeError(f"DemoConfig.optimize must be an OptimizeConfig, got {type(self.optimize).__name__}")
        if self.unit_costs is not None:
            from .cost import UnitCosts

            if not isinstance(self.unit_costs, dict):
                raise TypeError(f"DemoConfig.unit_costs must be None or a dict of seconds, got "
                                f"{type(self.unit_costs).__name__}")
            try:
                UnitCosts(**self.unit_costs)
            except TypeError as err:
                raise ValueError(f"DemoConfig.unit_costs has unknown or missing keys ({err}); expected candidate, "
                                 f"step and optionally evaluation, finish, prefix, got "
                                 f"{sorted(self.unit_costs)}") from None
        bad = [m for m in self.methods if m not in DEMO_METHODS]
        if bad or not self.methods:
            raise ValueError(f"DemoConfig.methods must be a non-empty subset of {tuple(DEMO_METHODS)}, "
                             f"got {self.methods!r}")


def _models(config: DemoConfig):
    """(pipe, teacher, judge): the judge is the teacher itself, so the loop optimizes exactly what the demo's
    teacher column reports (same frames, same view of them)."""
    from . import toy

    pipe = toy.load_pipeline(config.pipeline_path)
    teacher = toy.load_teacher(config.teacher_path)
    return pipe, teacher, teacher


def run_demo(config: DemoConfig | None = None, progress=print) -> dict:
    """Run the comparison; returns {"rows": per (instance, method) records, "summary": per method means,
    "interrupted": bool}. Ctrl-C stops it after writing results.json and index.html for the instances that finished
    (``interrupted`` is then True)."""
    config = config or DemoConfig()
    os.makedirs(config.out, exist_ok=True)
    threads = torch.get_num_threads()
    # The toy models are tiny: their ops are overhead-bound and one thread is fastest. With two, OpenMP's waiting
    # made each step 100x slower whenever another process used a core (measured on the dev machine: 0.7 s vs 5 ms
    # per denoiser call).
    torch.set_num_threads(1)
    keep_freed_memory()  # steadier decode times, so steadier unit costs (both methods run in this process)
    try:
        return _run_demo(config, progress)
    finally:
        torch.set_num_threads(threads)


def _run_demo(config: DemoConfig, progress) -> dict:
    from .evaluate.suites import load_toy
    from .io_atomic import atomic_write_json

    pipe, teacher, judge = _models(config)
    # the same held-out instances and the same scoring (rule score; the judge's mean P(Yes)) as `bench --suite toy`
    items = load_toy(config.instances, seed=config.seed).items
    budget = None
    if config.budgeted:
        budget = ({"best_of_n": config.n, "unit_costs": dict(config.unit_costs)} if config.unit_costs
                  else f"best_of_n:{config.n}")
    rows, media = [], []
    interrupted = False
    try:
        for i, item in enumerate(items):
            rows_i, media_i = _run_instance(config, i, item, pipe, teacher, judge, budget, len(items), progress)
            rows += rows_i  # only whole instances: a Ctrl-C inside one leaves none of its rows
            if media_i is not None:
                media.append(media_i)
    except KeyboardInterrupt:
        interrupted = True
        progress(f"interrupted: writing the results of the {len({r['instance'] for r in rows})} instance(s) that "
                 "finished")
    summary = summarize(rows)
    if config.write_media:
        _write_html(config.out, summary, rows, media)
    atomic_write_json(os.path.join(config.out, "results.json"),
                      {"summary": summary, "rows": rows, "interrupted": interrupted})
    return {"rows": rows, "summary": summary, "interrupted": interrupted}


def _run_instance(config, i, item, pipe, teacher, judge, budget, total, progress):
    """Every method on one instance. Returns (rows, media entry or None); Ctrl-C propagates."""
    from . import toy
    from .evaluate.runner import score_item
    from .instance import SamplingConfig, score_frames
    from .methods import run_method

    inst = item.toy
    queries = toy.queries_for(inst)
    sampling = SamplingConfig(num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE,
                              final_steps=toy.SAMPLE_STEPS, seed=config.seed * 1000 + i)
    oc = dataclasses.replace(config.optimize, sampling=sampling, budget=budget)
    videos = {"ground truth": inst.solution[None]}
    curves = None
    rows = []
    for label in config.methods:
        method = DEMO_METHODS[label]
        t0 = time.perf_counter()
        res = run_method(method, pipe, teacher if method == "optimize" else judge, inst.prompt,
                         image=inst.first_frame, queries=queries, config=oc, n=config.n)
        if res.stop_reason == "interrupted":  # optimize turned Ctrl-C into an early stop: the demo stops
            raise KeyboardInterrupt
        seconds = time.perf_counter() - t0
        scored = score_item(item, res.frames, score_frames(judge, res.frames, queries)[1])
        row = dict(instance=i, task=inst.task_type, difficulty=inst.difficulty, method=label,
                   rule_score=scored["score"], passed=scored["passed"], parts=scored["scores"]["rule_parts"],
                   teacher=scored["scores"]["teacher"], seconds=seconds, cost=res.cost.to_dict())
        if method == "optimize":
            row.update(stop_reason=res.stop_reason, steps=len(res.history), used_initial=res.used_initial)
            curves = res
        rows.append(row)
        videos[label] = res.frames
        progress(f"[{i + 1}/{total}] {inst.task_type:<5} {label:<10} rule {row['rule_score']:.2f} "
                 f"{'PASS' if row['passed'] else 'fail'}  teacher {row['teacher']:.2f}  {seconds:.1f} s")
    media = _write_media(config.out, i, inst, videos, curves) if config.write_media else None
    return rows, media


def summarize(rows) -> dict:
    """Per method: mean rule score, pass rate, mean teacher score, mean seconds, and the gap where the teacher says
    yes (> 0.5) but the rule says fail (reward hacking)."""
    out = {}
    order = list(DEMO_METHODS)
    for m in sorted({r["method"] for r in rows}, key=lambda m: order.index(m) if m in order else len(order)):
        rs = [r for r in rows if r["method"] == m]
        out[m] = dict(
            n=len(rs),
            rule_score=sum(r["rule_score"] for r in rs) / len(rs),
            pass_rate=sum(r["passed"] for r in rs) / len(rs),
            teacher=sum(r["teacher"] for r in rs) / len(rs),
            seconds=sum(r["seconds"] for r in rs) / len(rs),
            fooled=sum((r["teacher"] > 0.5) and not r["passed"] for r in rs) / len(rs),
        )
    if "plain" in out:
        for m, s in out.items():
            s["gain"] = s["rule_score"] - out["plain"]["rule_score"]
    return out


def format_table(summary: dict) -> str:
    lines = ["| method | rule score | gain vs plain | pass rate | teacher P(yes) | teacher yes, rule fail | s / instance |",
             "|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['rule_score']:.3f} | {s.get('gain', 0.0):+.3f} | {100 * s['pass_rate']:.0f}% | "
                     f"{s['teacher']:.2f} | {100 * s['fooled']:.0f}% | {s['seconds']:.1f} |")
    return "\n".join(lines)


def _write_media(out, i, inst, videos, result) -> dict:
    from .outputs import save_reward_plot
    from .reasoner import export_video

    names = list(videos)
    strip = torch.cat([videos[n][0] for n in names], dim=-1)  # (F, 3, H, W * methods): side by side
    gif = export_video(strip, os.path.join(out, f"instance_{i:03d}.gif"), fps=4)
    plot = None
    if result is not None and result.history:
        plot = save_reward_plot(result.history, result.queries.questions,
                                os.path.join(out, f"instance_{i:03d}_reward.png"))
    return dict(instance=i, prompt=inst.prompt, columns=names, gif=os.path.basename(gif),
                plot=os.path.basename(plot) if plot else None)


def _write_html(out, summary, rows, media) -> None:
    from .io_atomic import atomic_write_bytes

    parts = ["<!doctype html><meta charset='utf-8'><title>vlmteach_fast demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img.frames{image-rendering:pixelated;"
             "height:160px}img.plot{display:block;max-width:100%;height:auto;margin:8px 0}"
             "td,th{padding:4px 8px;border-bottom:1px solid #ddd}</style>",
             "<h1>vlmteach_fast demo: plain vs Best-of-5 vs optimize (at Best-of-5's budget)</h1><table><tr>"
             "<th>method</th><th>rule score</th><th>pass rate</th><th>teacher</th><th>fooled</th><th>s</th></tr>"]
    for m, s in summary.items():
        parts.append(f"<tr><td>{m}</td><td>{s['rule_score']:.3f}</td><td>{100 * s['pass_rate']:.0f}%</td>"
                     f"<td>{s['teacher']:.2f}</td><td>{100 * s['fooled']:.0f}%</td><td>{s['seconds']:.1f}</td></tr>")
    parts.append("</table>")
    if summary:
        atomic_write_bytes(os.path.join(out, "quality_vs_cost.png"), _quality_vs_cost_png(summary))
        parts.append(f"<h2>Quality against cost</h2>{_plot_img(out, 'quality_vs_cost.png')}"
                     "<p>Mean rule score against measured seconds per instance; "
                     "bench/toy_acceptance.py draws the same for Best-of-N at N = 1..8 and optimize at "
                     "best_of_n:2..8 on 48 instances.</p>")
    for m in media:
        scores = {r["method"]: r for r in rows if r["instance"] == m["instance"]}
        label = " | ".join(f"{c}" + (f" ({scores[c]['rule_score']:.2f}{' pass' if scores[c]['passed'] else ''})"
                                     if c in scores else "") for c in m["columns"])
        parts.append(f"<h3>{m['instance']}: {html.escape(m['prompt'])}</h3><p>{html.escape(label)}</p>"
                     f"<img class='frames' src='{m['gif']}'>")
        if m["plot"]:
            parts.append(_plot_img(out, m["plot"]))
    atomic_write_bytes(os.path.join(out, "index.html"), "\n".join(parts).encode())


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _plot_img(out, name) -> str:
    """An ``<img>`` of a plot shown at its own pixel size (drawn at ``outputs.PLOT_DPI`` for that), so its text is as
    large on the page as in the figure."""
    w, h = _png_size(os.path.join(out, name))
    return f"<img class='plot' src='{html.escape(name)}' width='{w}' height='{h}'>"


def _quality_vs_cost_figure(summary: dict):
    """One point per method at (mean seconds per instance, mean rule score); sized and lettered like
    ``outputs.reward_figure``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .outputs import PLOT_DPI, PLOT_FONTS, PLOT_WIDTH_PX

    with plt.rc_context(PLOT_FONTS):
        # 3.4 in = 326 px high: about the old figure's 320 px, with the legend beside the axes, not over them
        fig = plt.figure(figsize=(PLOT_WIDTH_PX / PLOT_DPI, 3.4), dpi=PLOT_DPI, layout="constrained")
        ax = fig.add_subplot()
        for i, (m, s) in enumerate(summary.items()):
            ax.scatter([s["seconds"]], [s["rule_score"]], s=80, color=f"C{i}", label=m, edgecolors="black")
        ax.set_xlabel("seconds per instance (measured)")
        ax.set_ylabel("mean rule score")
        ax.grid(alpha=0.3)
        # outside the axes: a point in any corner stays visible
        fig.legend(loc="outside right upper", frameon=False)
    return fig


def _quality_vs_cost_png(summary: dict) -> bytes:
    """PNG of ``_quality_vs_cost_figure``."""
    import io

    import matplotlib.pyplot as plt

    fig = _quality_vs_cost_figure(summary)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main_demo(args) -> int:
    """CLI entry: ``vlmteach-fast demo [--instances N] [--out DIR] [--seed S] [--units JSON]``."""
    units = None
    if getattr(args, "units", None):
        try:
            units = json.loads(args.units)
        except json.JSONDecodeError as err:
            raise SystemExit(f"--units must be a JSON object of seconds, e.g. '{{\"candidate\": 0.09, \"step\": "
                             f"0.1}}', got {args.units!r} ({err})") from None
    try:
        cfg = DemoConfig(instances=args.instances, out=args.out, seed=args.seed, unit_costs=units)
    except (ValueError, TypeError) as err:  # --instances 0: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
    t0 = time.perf_counter()
    result = run_demo(cfg)
    if result["interrupted"]:
        from .interrupts import exit_code, stop_name

        print(f"\ninterrupted ({stop_name()}): results of the {len({r['instance'] for r in result['rows']})} finished "
              f"instance(s) are in {os.path.join(cfg.out, 'results.json')}")
        return exit_code()
    print()
    print(format_table(result["summary"]))
    print(f"\n{cfg.instances} instance(s) in {time.perf_counter() - t0:.0f} s; open {os.path.join(cfg.out, 'index.html')}")
    plan = next((r["cost"]["extra"] for r in result["rows"] if r["method"] == "optimize"), None)
    if plan and "unit_costs" in plan:
        units = json.dumps(plan["unit_costs"])  # unrounded: a plan can sit within 0.01% of a step boundary
        print(f"optimize: {plan['planned_steps']} steps planned from unit costs {units} (seconds); "
              f"--units '{units}' reproduces this plan and these scores on any machine")
    print(json.dumps({m: round(s["rule_score"], 3) for m, s in result["summary"].items()}))
    return 0
