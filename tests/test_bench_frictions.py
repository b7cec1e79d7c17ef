"""Small frictions of the bench commands: an export that needs --method says so, a VBVR sample folder the official
script skips is warned about, messages that do not concern the user stay out of the output, and a VBVR excerpt runs
end to end on a CPU with the tiny models (``--pipeline tiny --teacher tiny``)."""

import logging
import os
import shutil
import subprocess
import sys
import warnings

import pytest

from vlmteach_fast.evaluate import load_suite

HERE = os.path.dirname(os.path.abspath(__file__))
VBVR = os.path.join(HERE, "data", "vbvr")


def test_bench_export_without_method_names_the_flag(tmp_path):
    from vlmteach_fast.evaluate.cli import main

    out = tmp_path / "run"
    for m in ("static", "end_state"):
        assert main(["bench", "--suite", VBVR, "--method", m, "--out", str(out), "--no-progress"]) == 0
    with pytest.raises(SystemExit, match="choose one with `method` \\(bench-export: --method end_state\\)"):
        main(["bench-export", "--run", str(out), "--dest", str(tmp_path / "dest")])


def test_vbvr_sample_folder_not_five_digits_is_warned_about(tmp_path, capsys):
    from vlmteach_fast.evaluate.cli import main

    root = tmp_path / "vbvr"
    shutil.copytree(VBVR, root)
    task = root / "In-Domain_50" / "G-3_stable_sort_data-generator"
    shutil.copytree(task / "00000", task / "sample_7")
    suite = load_suite(str(root))
    assert len(suite.items) == 4 and not suite.errors  # it still runs and is scored here
    (warning,) = suite.warnings
    assert warning.where.endswith("sample_7") and "not five digits" in warning.message
    assert main(["bench", "--suite", str(root), "--method", "static", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert "bench: warning:" in capsys.readouterr().err
    assert not load_suite(VBVR).warnings


def test_the_clip_torchvision_message_is_filtered_and_others_are_not():
    from vlmteach_fast.quiet import quiet_dependencies

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("transformers.utils.import_utils")
    logger.addHandler(handler)
    try:
        quiet_dependencies()
        quiet_dependencies()  # idempotent
        logger.warning("`CLIPImageProcessor` requires torchvision (not installed); falling back to ...")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert seen == ["something else"]


def test_the_command_line_does_not_print_the_clip_torchvision_message(tmp_path):
    pytest.importorskip("diffusers")
    code = ("import sys; from vlmteach_fast.cli import main; "
            f"main(['bench', '--suite', {VBVR!r}, '--method', 'static', '--out', {str(tmp_path / 'o')!r}, "
            "'--no-progress']); from transformers import CLIPImageProcessor")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "requires torchvision" not in run.stderr


def test_score_plot_without_a_finished_instance_warns_nothing():
    from vlmteach_fast.evaluate.summary import plot_score_vs_seconds

    failed = [{"instance_id": "a", "method": "optimize", "config_hash": "h", "status": "error", "score": None,
               "score_name": None, "cost": None}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_score_vs_seconds(failed)[:4] == b"\x89PNG"


def test_tiny_models_run_a_vbvr_excerpt_end_to_end_on_a_cpu(tmp_path):
    import json

    from vlmteach_fast.evaluate.cli import main
    from vlmteach_fast.evaluate.models import TINY_SPECS

    cfg = tmp_path / "cpu.yaml"
    cfg.write_text("max_steps: 1\nsampling: {num_frames: 5, height: 32, width: 32, final_steps: 1}\n"
                   "lora: {rank: 2}\ndecoder: {kind: full}\n")
    out = tmp_path / "run"
    assert main(["bench", "--suite", VBVR, "--method", "optimize", "--pipeline", "tiny", "--teacher", "tiny",
                 "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "official" / "optimize").rglob("*.mp4"))) == 3
    (settings,) = [json.loads(p.read_text()) for p in (out / "configs").iterdir()]
    assert settings["identity"]["pipeline"] == TINY_SPECS["--pipeline"]  # the factory it stands for
    with pytest.raises(SystemExit, match="'tiny' names a pipeline or a teacher-like model only"):
        main(["bench", "--suite", VBVR, "--method", "baseline", "--pipeline", "tiny", "--teacher", "tiny",
              "--judge", "tiny", "--out", str(tmp_path / "x")])
