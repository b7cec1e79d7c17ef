"""`vlmteach-fast solve`: writes every output file; bad config keys and paths fail fast, before models load."""

import json
import os

import pytest
import torch

from vlmteach_fast.cli import main
from vlmteach_fast.testing import tiny_ti2v_pipeline


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from vlmteach_fast.testing import make_qwen_image_processor, make_qwen_vl

    root = tmp_path_factory.mktemp("models")
    tiny_ti2v_pipeline().save_pretrained(root / "pipe")
    model, tok = make_qwen_vl()
    for obj in (model, tok, make_qwen_image_processor()):
        obj.save_pretrained(root / "teacher")
    from PIL import Image

    Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()).save(root / "frame.png")
    (root / "cfg.yaml").write_text("max_steps: 2\nlr: 0.01\nprogress: false\nn: 2\n"
                                   "sampling: {num_frames: 5, final_steps: 2}\nlora: {rank: 2}\n")
    return root


def _args(models, out, *extra):
    return ["solve", "--pipeline", str(models / "pipe"), "--teacher", str(models / "teacher"), "--prompt",
            "move the ball onto the square", "--image", str(models / "frame.png"), "--queries",
            '["Is the ball on the square?", "Is there one ball?"]', "--config", str(models / "cfg.yaml"),
            "--out", str(out), *extra]


def test_solve_optimize_writes_every_file(models, tmp_path, capsys):
    assert main(_args(models, tmp_path / "out")) == 0
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["adapter", "history.json", "manifest.json", "result.json", "reward.png", "video.gif", "video.mp4"]
    assert sorted(os.listdir(tmp_path / "out" / "adapter")) == ["adapter_config.json", "manifest.json",
                                                                 "pytorch_lora_weights.safetensors"]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["steps"] == 2 and len(result["final_p_yes"]) == 2
    assert (tmp_path / "out" / "reward.png").read_bytes()[:4] == b"\x89PNG"
    assert "optimize: P(Yes) per query" in capsys.readouterr().out


def test_solve_best_of_n(models, tmp_path):
    assert main(_args(models, tmp_path / "bon", "--method", "best_of_n")) == 0
    result = json.loads((tmp_path / "bon" / "result.json").read_text())
    assert result["method"] == "best_of_n" and len(result["candidates"]) == 2  # n: 2 from the config file


@pytest.mark.parametrize("change,message", [
    (("--config", "BAD"), "unknown key(s) ['max_stepz']"),
    (("--image", "/nonexistent.png"), "`image` file not found"),
    (("--pipeline", "./no/such/dir"), "--pipeline directory not found"),
    (("--queries", "not json"), "--queries must be a JSON file or inline JSON"),
    (("--queries", "[]"), "--queries must be a non-empty list"),
])
def test_bad_arguments_fail_fast(models, tmp_path, change, message):
    args = _args(models, tmp_path / "x")
    if change[1] == "BAD":
        bad = tmp_path / "bad.yaml"
        bad.write_text("max_stepz: 3\n")
        change = (change[0], str(bad))
    args[args.index(change[0]) + 1] = change[1]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert message in str(exc.value)


def test_unknown_method_is_rejected(models, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(_args(models, tmp_path / "y", "--method", "best_of_five"))
    assert "invalid choice: 'best_of_five'" in capsys.readouterr().err


def _solve_with_signal(models, out, target, sig):
    """``solve`` in a subprocess that sends itself ``sig`` at the 1st or 2nd call of ``target`` (signal_hook.py)."""
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    hook = [os.path.join(here, "signal_hook.py"), *target, sig, "--"]
    return subprocess.run([sys.executable, *hook, *_args(models, out)], cwd=os.path.dirname(here),
                          capture_output=True, text=True, timeout=300)


def test_ctrl_c_in_solve_saves_the_interrupted_result_and_says_so(models, tmp_path):
    _check_solve_stopped_by(models, tmp_path, "INT", 130, "Ctrl-C")


def test_sigterm_in_solve_saves_the_interrupted_result_and_exits_143(models, tmp_path):
    _check_solve_stopped_by(models, tmp_path, "TERM", 143, "SIGTERM")


def _check_solve_stopped_by(models, tmp_path, sig, code, name):
    from vlmteach_fast.io_atomic import verify_output_set

    # a real signal in the 2nd optimization step (Reasoner.predict runs once per step; the config allows 2); SIGTERM
    # is what timeout, scancel, docker stop and Kubernetes send
    run = _solve_with_signal(models, tmp_path / "out", ("vlmteach_fast.reasoner.reasoner:Reasoner.predict", "2"), sig)
    assert run.returncode == code, run.stdout[-2000:] + run.stderr[-3000:]
    assert f"interrupted ({name}) after 1 step(s)" in run.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["stop_reason"] == "interrupted" and result["interrupted"] is True and result["steps"] == 1
    assert "adapter/pytorch_lora_weights.safetensors" in verify_output_set(tmp_path / "out")["files"]


def test_sigterm_before_any_result_exits_143_and_says_so(models, tmp_path):
    run = _solve_with_signal(models, tmp_path / "out", ("vlmteach_fast.loading:load_teacher", "1"), "TERM")
    assert run.returncode == 143, run.stdout[-2000:] + run.stderr[-3000:]
    assert "vlmteach-fast solve: stopped by SIGTERM before any result was written" in run.stderr
    assert not (tmp_path / "out").exists()


def test_solve_with_toy_specs_runs_the_built_in_models_offline(tmp_path, monkeypatch):
    """``--pipeline toy --teacher toy`` means the shipped toy models (as in ``bench``), not a Hub repo named toy."""
    from PIL import Image

    from vlmteach_fast import toy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no folder named toy here
    inst = toy.make_instances(1)[0]
    pixels = (inst.first_frame.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "frame.png")
    (tmp_path / "cfg.yaml").write_text("progress: false\nsampling: {num_frames: 9, final_steps: 2}\n")
    assert main(["solve", "--pipeline", "toy", "--teacher", "toy", "--prompt", inst.prompt, "--image",
                 str(tmp_path / "frame.png"), "--method", "baseline", "--config", str(tmp_path / "cfg.yaml"),
                 "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "result.json").read_text())["method"] == "baseline"
