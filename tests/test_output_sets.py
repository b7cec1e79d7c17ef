"""Output sets: written as a unit with a manifest (every file, its SHA-256), moved into place whole, verified on
load; ``OptimizeResult.save`` writes the adapter the result holds; strict JSON; permissions follow the umask; a
``kill -9`` at a known point of a save (``os.kill`` to itself in a subprocess) never leaves a mix or nothing."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from vlmteach_fast.testing import GEOM, BrightnessTeacher, first_frame, tiny_ti2v_pipeline
from vlmteach_fast.baselines import best_of_n
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.io_atomic import MANIFEST, OutputSetError, commit_dir, verify_output_set
from vlmteach_fast.outputs import load_adapter
from vlmteach_fast.reasoner import LoRASpec

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLING = SamplingConfig(final_steps=1, **GEOM)
LORA = LoRASpec(rank=2, fused=False)


@pytest.fixture(scope="module")
def pipe():
    return tiny_ti2v_pipeline()


def _optimize(pipe, teacher=None, lr=0.05, steps=2):
    cfg = OptimizeConfig(max_steps=steps, lr=lr, progress=False, sampling=SAMPLING, lora=LORA, patience=9,
                         keep_initial_if_better=False)
    return optimize(pipe, teacher or BrightnessTeacher(), "make it bright", image=first_frame(), config=cfg)


def _strict_json(path):
    def reject(name):
        raise ValueError(f"{path}: {name} is not JSON")

    with open(path) as f:
        return json.load(f, parse_constant=reject)


def test_a_second_method_into_the_same_folder_leaves_nothing_of_the_first(pipe, tmp_path):
    d = tmp_path / "d"
    _optimize(pipe).save(d)
    assert {"adapter", "history.json", MANIFEST} <= set(os.listdir(d))
    bon = best_of_n(pipe, BrightnessTeacher(), "make it bright", n=2, image=first_frame(), sampling=SAMPLING,
                    lora=LORA)
    bon.save(d)
    assert sorted(os.listdir(d)) == [MANIFEST, "result.json", "video.gif", "video.mp4"]
    assert sorted(verify_output_set(d)["files"]) == ["result.json", "video.gif", "video.mp4"]
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no temporary folders left beside it


def test_a_corrupted_adapter_is_detected_on_load(pipe, tmp_path):
    d = tmp_path / "d"
    _optimize(pipe).save(d)
    manifest = verify_output_set(d)
    weights = d / "adapter" / "pytorch_lora_weights.safetensors"
    assert manifest["files"]["adapter/pytorch_lora_weights.safetensors"]["bytes"] == weights.stat().st_size
    data = bytearray(weights.read_bytes())
    data[-16:] = os.urandom(16)  # random bytes in the tensor data: the header still parses, values change
    weights.write_bytes(bytes(data))
    with pytest.raises(OutputSetError, match=r"adapter/pytorch_lora_weights\.safetensors: SHA-256 differs"):
        verify_output_set(d)
    with pytest.raises(OutputSetError, match="SHA-256 differs"):
        load_adapter(tiny_ti2v_pipeline(), d / "adapter")
    (d / "stray.txt").write_text("x")
    with pytest.raises(OutputSetError, match="stray.txt: not in the manifest"):
        verify_output_set(d)


def test_save_writes_the_adapter_the_result_holds_not_the_pipelines_current_one(pipe, tmp_path):
    from safetensors.torch import load_file

    first = _optimize(pipe, lr=0.05)
    second = _optimize(pipe, lr=0.2)  # same pipeline: its reasoner now holds the second adapter
    assert any(not torch.equal(first.adapter[k], second.adapter[k]) for k in first.adapter)
    first.save(tmp_path / "first")
    saved = load_file(str(tmp_path / "first" / "adapter" / "pytorch_lora_weights.safetensors"))
    adapter_name = LORA.adapter_name
    assert len(saved) == len(first.adapter)
    for name, value in first.adapter.items():
        torch.testing.assert_close(saved["transformer." + name.replace(f".{adapter_name}.", ".")], value,
                                   rtol=0, atol=0)
    current = first.reasoner.snapshot_lora()  # saving did not change what the pipeline holds
    for name, value in second.adapter.items():
        torch.testing.assert_close(current[name].cpu(), value, rtol=0, atol=0)
    fresh = tiny_ti2v_pipeline()
    load_adapter(fresh, tmp_path / "first")  # the verified load path
    assert any(".lora_A." in n for n, _ in fresh.transformer.named_parameters())


def test_history_json_is_strict_json_with_null_for_nan(pipe, tmp_path):
    res = _optimize(pipe, teacher=BrightnessTeacher(nan_at=(1,)), steps=3)  # call 1 = the first step's reward
    assert res.history[0].skipped and res.history[0].loss != res.history[0].loss  # NaN in memory
    res.save(tmp_path / "d")
    history = _strict_json(tmp_path / "d" / "history.json")
    assert history[0]["loss"] is None and history[0]["grad_norm"] is None and history[0]["skipped"] is True
    assert isinstance(history[1]["loss"], float)
    _strict_json(tmp_path / "d" / "result.json")


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_and_folders_follow_the_umask(pipe, tmp_path, umask):
    from vlmteach_fast.evaluate.records import RecordWriter

    res = _optimize(pipe, steps=1)
    old = os.umask(umask)
    try:
        res.save(tmp_path / "d")
        with RecordWriter(tmp_path / "shards" / "r.jsonl"):
            pass
    finally:
        os.umask(old)
    modes = {}
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs:
            modes[os.path.join(root, name)] = (stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode), 0o777)
        for name in files:
            modes[os.path.join(root, name)] = (stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode), 0o666)
    assert len(modes) > 10
    wrong = {p: oct(m) for p, (m, full) in modes.items() if m != full & ~umask}
    assert not wrong, wrong


# ----- kill -9 at known points of a save -----

CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from vlmteach_fast import io_atomic as outputs
    from vlmteach_fast.reasoner import LoRASpec, Reasoner
    from vlmteach_fast.testing import tiny_wan_pipeline

    target, where = sys.argv[1], sys.argv[2]
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))
    r.save_adapter(target)                                   # the first set: complete
    with torch.no_grad():
        r.lora_parameters()[1].add_(1.0)                     # the second one differs
    if where == "before_swap":                               # every file written, nothing moved yet
        real_manifest = outputs._write_manifest
        def manifest_then_die(root):
            real_manifest(root)
            os.kill(os.getpid(), signal.SIGKILL)
        outputs._write_manifest = manifest_then_die
    elif where == "between_renames":                         # file systems without an atomic exchange
        outputs._exchange = lambda a, b: False
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if os.path.basename(dst) == "set":                # the old set has just been moved aside
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
    r.save_adapter(target)
    print("not killed")
""")


def _killed_save(tmp_path, where):
    target = tmp_path / "adapter"
    run = subprocess.run([sys.executable, "-c", CHILD, str(target), where], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == -9, run.stdout + run.stderr[-3000:]
    return target


def _weights(d):
    return (d / "pytorch_lora_weights.safetensors").read_bytes()


def test_kill_before_the_swap_keeps_the_old_set_whole(tmp_path):
    target = _killed_save(tmp_path, "before_swap")
    manifest = verify_output_set(target)  # the first set, complete and matching its manifest
    assert sorted(manifest["files"]) == ["adapter_config.json", "pytorch_lora_weights.safetensors"]
    leftovers = [e for e in os.listdir(tmp_path) if e != "adapter"]
    assert leftovers and all(e.startswith(".tmp-adapter~") for e in leftovers)
    commit_dir(lambda d: open(os.path.join(d, "pytorch_lora_weights.safetensors"), "wb").write(b"x"), target,
               known=("pytorch_lora_weights.safetensors", "adapter_config.json", MANIFEST))
    assert os.listdir(tmp_path) == ["adapter"]  # the next save removes what the killed one left


def test_kill_between_the_two_renames_is_completed_on_load(tmp_path):
    target = _killed_save(tmp_path, "between_renames")
    assert not target.exists()  # the kill landed between the renames: the moment the old code lost the adapter
    manifest = verify_output_set(target)  # finishes the move: the new set, complete
    assert _weights(target) and sorted(manifest["files"]) == ["adapter_config.json", "pytorch_lora_weights.safetensors"]
    from safetensors.torch import load_file

    values = load_file(str(target / "pytorch_lora_weights.safetensors"))
    assert any(float(v.abs().max()) >= 1.0 for k, v in values.items() if "lora_B" in k)  # the second (+1.0) one
