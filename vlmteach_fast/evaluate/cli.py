"""``vlmteach-fast bench``, ``bench-export`` and ``bench-report``; wired into the main parser by ``add_bench_parsers``.

    vlmteach-fast bench --suite ruler.jsonl --method optimize --pipeline DIR --teacher DIR --config c.yaml --out runs/r
    accelerate launch --num_processes 8 -m vlmteach_fast.cli bench ...        # one process per GPU, same flags
    vlmteach-fast bench-export --run runs/r --dest videos/my_model --method optimize   # official layout
    vlmteach-fast bench-report bench/results.json --out bench/report.md

Re-running the same ``bench`` command resumes; running it with another ``--method`` into the same ``--out`` adds that
method's column to the reports (summary.md, summary.csv, score_vs_seconds.png, categories.png, index.html). Each run
also leaves its videos in the benchmark's official layout under ``--out``/official/METHOD/ (``evaluate.export``).
"""

from __future__ import annotations

import os
import sys

__all__ = ["add_bench_parsers", "run_bench_command", "run_bench_report"]


def _add_bench(sub):
    from ..methods import METHODS
    from .suites import DEFAULT_QUERY_METRICS

    p = sub.add_parser("bench", help="run a method over a benchmark suite (resumable; accelerate launch to shard)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True,
                   help="RULER-style .json/.jsonl file, VBVR-style folder, or 'toy[:N]' (built-in demo world)")
    p.add_argument("--method", default="optimize", choices=METHODS,
                   help="default optimize; static, end_state, ground_truth: sanity rows made without a video model "
                        "(the first frame held, a cut to the ground-truth final frame, the ground-truth video); "
                        "best_of_n_oracle: Best-of-N picked by the benchmark's own score, an upper reference "
                        "(pass@k) reported apart from the methods")
    p.add_argument("--pipeline", default=None,
                   help="diffusers pipeline folder / hub id, 'toy', 'tiny' (random-weight test model: a plumbing "
                        "check on a CPU, not a result), or py:MODULE:FACTORY (default 'toy' for the toy suite, else "
                        "required; not loaded by the sanity methods)")
    p.add_argument("--teacher", default=None,
                   help="VLM folder / hub id, 'toy', 'tiny' (rewards bright frames), or py:MODULE:FACTORY")
    p.add_argument("--judge", default="none",
                   help="checklist judge: none | teacher | VLM folder | py:MODULE:FACTORY (local, NOT the official "
                        "RULER-Bench judge); default none")
    p.add_argument("--select-judge", default=None,
                   help="best_of_n only: the VLM that picks among its candidates, loaded like --teacher (VLM folder "
                        "/ hub id, 'toy', 'tiny', py:MODULE:FACTORY); default: the teacher picks. Never the "
                        "benchmark's scorer: --method best_of_n_oracle picks by that, as a reference (pass@k)")
    p.add_argument("--scorer", default=None,
                   help="the suite's own scorer, the primary score: 'vbvr' (VBVR-EvalKit's evaluators as its "
                        "run_evaluation.py runs them: rule score only), 'vbvr:weighted' (as its evaluate.py: weighted "
                        "with frame similarity), 'vbvr-pro' (VBVR-Pro-Bench's evaluators as its "
                        "run_evaluation_video.py runs them; a sample without a video scores 0), or py:MODULE:FUNC "
                        "called as FUNC(item, frames (1, F, 3, H, W) in [0, 1][, video_path=saved mp4]) -> score or "
                        "{score, passed, parts}")
    p.add_argument("--config", default=None, help="YAML/JSON config (OptimizeConfig fields, plus n and rounds)")
    p.add_argument("--out", required=True, help="output folder (records, videos, reports)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N suite items (a .jsonl suite is read only that far)")
    p.add_argument("--query-metrics", default=",".join(DEFAULT_QUERY_METRICS),
                   help=f"checklist metrics used as the teacher's queries (default {','.join(DEFAULT_QUERY_METRICS)})")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a RULER-style suite file's paths (input_image_path, ...) lead outside its folder (off "
                        "by default: such items are skipped with an error naming the item and the field)")
    p.add_argument("--retry-failed", action="store_true", help="re-run instances recorded as failed")
    p.add_argument("--baseline-method", default="baseline", help="method the reports measure gains against")
    p.add_argument("--device", default=None, help="model device (default: accelerate's device for this process)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="model dtype (default bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_bench_command)


def _add_report(sub):
    p = sub.add_parser("bench-report", help="pytest-benchmark JSON -> markdown tables (machine, versions, backends)")
    p.add_argument("json", nargs="+", help="files written by pytest --benchmark-json=FILE")
    p.add_argument("--out", default=None, help="write the markdown here (default: print it)")
    p.add_argument("--reference", default=None,
                   help="provider(s), comma-separated, to compute speed-ups against where a benchmark's extra_info "
                        "names none (e.g. peft,base)")
    p.add_argument("--title", default="Throughput", help="heading of the page")
    p.set_defaults(func=run_bench_report)


def _add_export(sub):
    from .export import LAYOUTS

    p = sub.add_parser("bench-export", help="a bench run's videos in the benchmark's official layout (RULER, VBVR)")
    p.add_argument("--run", required=True, help="the bench --out folder")
    p.add_argument("--dest", required=True,
                   help="folder to write: DEST/{task}/{index}.mp4 (RULER) or DEST/{split}/{task}/{sample}.mp4 (VBVR)")
    p.add_argument("--method", default=None, help="whose videos (default: the run's only method)")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="default: VBVR when records have a split")
    p.add_argument("--link", action="store_true", help="hard-link instead of copying where possible")
    p.set_defaults(func=run_bench_export)


def add_bench_parsers(subparsers) -> None:
    """Add ``bench``, ``bench-export`` and ``bench-report`` to the ``vlmteach-fast`` subparsers."""
    _add_bench(subparsers)
    _add_export(subparsers)
    _add_report(subparsers)


def run_bench_export(args) -> int:
    from .export import export_official

    if not os.path.isdir(os.path.join(args.run, "shards")):
        raise SystemExit(f"error: --run {args.run!r} is not a bench output folder (no shards/)")
    try:
        written = export_official(args.run, args.dest, method=args.method, layout=args.layout, link=args.link)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from err
    print(f"bench-export: {len(written)} videos in {args.dest}", flush=True)
    return 0


def _scorer(spec: str | None, suite):
    """``--scorer`` -> a callable, before any model loads (a missing VBVR-EvalKit fails here)."""
    from .models import resolve_factory
    from .vbvr import VBVR_SCORERS, VBVRScorer

    if spec is None:
        return None
    from .vbvr_pro import PRO_SCORER, VBVRProScorer

    if spec in VBVR_SCORERS or spec == PRO_SCORER:
        if suite.kind != "vbvr":
            bench = "VBVR-Pro-Bench" if spec == PRO_SCORER else "VBVR-Bench"
            raise ValueError(f"--scorer {spec} scores {bench} samples; --suite is a {suite.kind} suite")
        return VBVRProScorer() if spec == PRO_SCORER else VBVRScorer(spec)
    return resolve_factory(spec, "--scorer")


def _select_judge(args) -> str | None:
    """``--select-judge`` expanded and checked (before any model loads); None when the teacher picks."""
    from .models import check_spec, expand_spec

    spec = expand_spec(getattr(args, "select_judge", None), "--select-judge")
    if spec is None or spec == "teacher":
        return None
    if args.method != "best_of_n":
        raise ValueError(f"--select-judge picks among Best-of-N's candidates: it needs --method best_of_n, got "
                         f"--method {args.method}")
    if spec == "none":
        raise ValueError("--select-judge none: expected teacher, tiny, toy, a VLM folder / hub id or "
                         "py:MODULE:FACTORY (Best-of-N always has a picker)")
    check_spec(spec, "--select-judge")
    return spec


def _prepare(args):
    """Everything cheap, before any model loads: suite, config, specs, output folder. Raises SystemExit on bad input."""
    from ..config_io import load_config
    from ..loading import check_device_dtype, check_out_dir
    from ..methods import SANITY_METHODS
    from .models import check_spec, expand_spec
    from .runner import BenchConfig
    from .suites import load_suite

    try:
        limit = args.limit if args.limit is not None and args.limit > 0 else None  # else refused by BenchConfig
        suite = load_suite(args.suite, allow_outside_paths=args.allow_outside_paths, limit=limit)
        if suite.kind == "toy":
            args.pipeline = args.pipeline or "toy"
            args.teacher = args.teacher or "toy"
        args.pipeline, args.teacher = expand_spec(args.pipeline, "--pipeline"), expand_spec(args.teacher, "--teacher")
        args.judge = expand_spec(args.judge, "--judge")
        sanity = args.method in SANITY_METHODS
        if sanity:  # no video model: --pipeline is not loaded, nor part of the config; the teacher only scores
            args.pipeline = None
        for name in ("pipeline", "teacher"):
            if getattr(args, name) is None and not sanity:
                raise ValueError(f"--{name} is required for suite {args.suite!r}")
            if getattr(args, name) is not None:
                check_spec(getattr(args, name), f"--{name}")
        check_spec(args.judge, "--judge")
        args.select_judge = _select_judge(args)
        scorer = _scorer(args.scorer, suite)
        if sanity and suite.kind == "ruler" and args.teacher is None and args.judge == "none" and scorer is None:
            raise ValueError(f"--method {args.method} on a RULER-style suite needs --teacher, --judge or --scorer: "
                             "nothing else scores its videos")
        if args.judge == "teacher" and args.teacher is None:
            raise ValueError("--judge teacher needs --teacher")
        config, options = load_config(args.config)
        check_device_dtype(args.device, args.dtype)
        if args.no_progress:
            config.progress = False
        metrics = tuple(m.strip() for m in args.query_metrics.split(",") if m.strip())
        cfg = BenchConfig(method=args.method, out=args.out, optimize=config, options=options, limit=args.limit,
                          query_metrics=metrics, retry_failed=args.retry_failed, scorer=scorer,
                          identity={"suite": suite.name, "pipeline": args.pipeline, "teacher": args.teacher,
                                    "judge": args.judge, "scorer": args.scorer, "dtype": args.dtype,
                                    # only when named: runs without one keep their config hash
                                    **({"select_judge": args.select_judge} if args.select_judge else {})})
        check_out_dir(args.out)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from err
    return suite, cfg


def run_bench_command(args) -> int:
    from ..loading import default_dtype
    from .models import load_judge_spec, load_pipeline_spec, load_select_judge_spec, load_teacher_spec
    from .runner import run_bench
    from .shard import process_state

    suite, cfg = _prepare(args)
    info = process_state(args.device)
    if info.is_main:
        for err in suite.errors:  # malformed entries: reported, skipped; the others run
            print(f"bench: skipping {err}", file=sys.stderr, flush=True)
        for warning in suite.warnings:
            print(f"bench: warning: {warning}", file=sys.stderr, flush=True)

    def load_models():
        device = info.device(args.device)
        dtype = default_dtype(device, args.dtype)
        pipe = None if args.pipeline is None else load_pipeline_spec(args.pipeline, device, dtype,
                                                                     args.trust_remote_code)
        teacher = None if args.teacher is None else load_teacher_spec(args.teacher, device, dtype,
                                                                      args.trust_remote_code)
        judge = load_judge_spec(args.judge, teacher, device, dtype, args.trust_remote_code)
        select_judge = load_select_judge_spec(getattr(args, "select_judge", None), device, dtype,
                                              args.trust_remote_code)
        return pipe, teacher, judge, select_judge

    try:
        records = run_bench(suite, cfg, load_models, info, progress=not args.no_progress)
        if records is not None:  # the main process: reports and the official tree (those writes can fail alike)
            _write_reports(suite, cfg, args)
    except Exception as err:
        from ..io_atomic import storage_error

        if not storage_error(err):
            raise
        print(f"bench: stopped: {storage_error(err)} ({err}); the finished instances are recorded, the one that was "
              "running is not: free space (or make --out writable) and re-run the same command to resume",
              file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        from ..interrupts import exit_code, stop_name

        if info.is_main:
            finished = _write_reports(suite, cfg, args)
            print(f"bench: interrupted ({stop_name()}); {finished} finished instance(s) are recorded and in the "
                  "report; the instance that was running is not: re-run the same command to resume", file=sys.stderr,
                  flush=True)
        return exit_code()  # the shell's code for the signal: 130 (Ctrl-C), 143 (SIGTERM)
    if records is None:  # not the main process: it has written its shard
        return 0
    items = suite.items[: cfg.limit] if cfg.limit else suite.items
    ok = [r for r in records if r["status"] == "ok"]
    return 0 if len(ok) == len(items) and not suite.errors else 1


def _write_reports(suite, cfg, args) -> int:
    """Reports of every method run into ``--out`` (latest config of each), and the summary line of this run's
    method. Returns how many of this run's instances are recorded."""
    from .fingerprint import current_records, item_keys
    from .provenance import provenance_notes
    from .records import method_labels, read_all_records
    from .summary import latest_configs, sanity_notes, write_reports

    items = suite.items[: cfg.limit] if cfg.limit else suite.items
    keys = item_keys(items)
    ours = [r for r in read_all_records(cfg.out) if r["instance_id"] in keys]  # every method run into --out
    everything = current_records(ours, keys, cfg.out)
    current = latest_configs(everything)
    if len(current) < len(ours):
        print(f"bench: {len(ours) - len(current)} records of earlier configs, changed suite items or changed "
              "weights are left out of the reports (kept in shards/)", flush=True)
    paths = write_reports(cfg.out, current, items, suite.errors, title=f"{suite.name}", baseline=args.baseline_method)
    for warning, text in provenance_notes(current, method_labels(current)) + sanity_notes(current):
        if warning:
            print(f"bench: {text.replace('**', '')}", flush=True)
    if suite.kind in ("ruler", "vbvr"):
        from .export import export_official

        from ..io_atomic import OutputSetError

        official = os.path.join(cfg.out, "official", cfg.method)
        try:
            export_official(cfg.out, official, method=cfg.method, layout=suite.kind, link=True, records=current)
            paths["official"] = official
        except OutputSetError as err:  # the user's files in our tree: the reports stand, the tree is not replaced
            print(f"bench: official layout not written: {err}", file=sys.stderr, flush=True)
    chash = cfg.hash()
    records = [r for r in everything if r["method"] == cfg.method and r["config_hash"] == chash]
    ok = [r for r in records if r["status"] == "ok"]
    scores = [r["score"] for r in ok]
    mean = f"{sum(scores) / len(scores):.3f} ({ok[0]['score_name']})" if ok else "-"
    from ..methods import REFERENCE_METHODS

    what = " (oracle upper reference, pass@k: picked by the benchmark's own score; not a method)" \
        if cfg.method in REFERENCE_METHODS else ""
    print(f"bench: {cfg.method}{what}: {len(ok)}/{len(items)} finished, {len(records) - len(ok)} failed, "
          f"{len(suite.errors)} suite entries skipped; mean score {mean}; report {paths['summary.md']}"
          + (f"; official layout {paths['official']}" if "official" in paths else ""), flush=True)
    return len(records)


def run_bench_report(args) -> int:
    from ..io_atomic import atomic_write_bytes
    from .throughput import throughput_markdown

    try:
        md = throughput_markdown(args.json, reference=args.reference, title=args.title)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from err
    if args.out:
        atomic_write_bytes(args.out, md.encode())
        print(f"bench-report: wrote {args.out}")
    else:
        print(md)
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m vlmteach_fast.evaluate.cli bench ...``) until cli.py wires the subcommands."""
    import argparse

    from ..quiet import quiet_dependencies

    quiet_dependencies()
    parser = argparse.ArgumentParser(prog="vlmteach-fast")
    add_bench_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
