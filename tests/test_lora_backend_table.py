"""The CUDA backend choice from the shipped measurements (vlmteach_fast/ops/measured.py), the table writer
(bench/lora_table.py), gpu_check step 3 writing it, and `vlmteach-fast doctor` printing the choice. No GPU needed:
the device name and availability are simulated."""

import json
import os
import subprocess
import sys

import pytest
import torch
from bench_scripts import bench_module

from vlmteach_fast.ops import dispatch, measured
from vlmteach_fast.ops.measured import Row, choose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = "NVIDIA H200"
SHAPE = (16384, 3072, 3072, 16, "bfloat16")


def _rows(**ms):
    """Rows at SHAPE on GPU, one per backend=ms."""
    return [Row(GPU, *SHAPE[:4], SHAPE[4], backend, t) for backend, t in ms.items()]


def _all_usable(_):
    return True


def test_no_rows_for_this_gpu_keeps_the_reference():
    rows = _rows(reference=1.4, triton=1.0)
    assert choose(rows, "NVIDIA H100 80GB HBM3", *SHAPE, _all_usable)[0] == "reference"
    assert choose([], GPU, *SHAPE, _all_usable) == (
        "reference", f"no measurements for {GPU} bfloat16 in the shipped table: cuBLAS reference by default")


def test_a_kernel_measured_faster_is_chosen_with_the_numbers():
    backend, why = choose(_rows(reference=1.38, triton=1.10, cuda=1.39), GPU, *SHAPE, _all_usable)
    assert backend == "triton" and "1.1 ms < reference 1.38 ms" in why


def test_never_a_kernel_measured_slower_than_the_reference():
    backend, why = choose(_rows(reference=1.38, triton=3.42, cuda=1.39), GPU, *SHAPE, _all_usable)
    assert backend == "reference" and "no usable kernel faster" in why


def test_unusable_or_comparison_only_backends_are_not_chosen():
    rows = _rows(reference=1.38, triton=1.2, cuda=1.3, compile=0.9)
    assert choose(rows, GPU, *SHAPE, lambda b: b != "triton")[0] == "cuda"  # triton not built here
    assert choose(_rows(reference=1.38, compile=0.9), GPU, *SHAPE, _all_usable)[0] == "reference"
    assert choose(_rows(triton=1.0), GPU, *SHAPE, _all_usable)[0] == "reference"  # no reference row: nothing known


def test_the_nearest_measured_shape_decides():
    small = [Row(GPU, 8192, 3072, 3072, 16, "bfloat16", b, t) for b, t in (("reference", 0.7), ("triton", 0.6))]
    large = [Row(GPU, 32768, 5120, 5120, 64, "bfloat16", b, t) for b, t in (("reference", 5.0), ("triton", 6.0))]
    assert choose(small + large, GPU, 9000, 3072, 3072, 16, "bfloat16", _all_usable)[0] == "triton"
    assert choose(small + large, GPU, 30000, 5120, 5120, 64, "bfloat16", _all_usable)[0] == "reference"
    assert choose(small + large, GPU, 9000, 3072, 3072, 16, "float16", _all_usable)[0] == "reference"  # other dtype


def test_malformed_table_row_is_named():
    with pytest.raises(ValueError, match="row 0 is malformed"):
        measured.parse_rows({"rows": [{"device": GPU, "tokens": 1}]})


def test_shipped_table_parses():
    measured.load_table.cache_clear()
    assert isinstance(measured.load_table(), tuple)


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA 'tensors' on a simulated H200 where every backend is usable; the table is set per test."""
    monkeypatch.setattr(dispatch, "_why_not", lambda name, device: None)
    monkeypatch.setattr(dispatch, "_choice_cache", {})
    monkeypatch.setattr(dispatch, "_shape_cache", {})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: GPU)

    def use(rows):
        monkeypatch.setattr(measured, "load_table", lambda path=None: tuple(rows))
    return use


def test_op_choice_on_cuda_follows_the_table_per_shape(fake_gpu):
    cuda = torch.device("cuda")
    fake_gpu([])
    assert dispatch.select_backend_for_shape(cuda, *SHAPE[:4], torch.bfloat16)[0] == "reference"
    dispatch._shape_cache.clear()
    fake_gpu(_rows(reference=1.38, triton=1.1))
    assert dispatch.select_backend_for_shape(cuda, *SHAPE[:4], torch.bfloat16)[0] == "triton"
    with dispatch.use_backend("cuda"):  # forcing still wins
        assert dispatch.select_backend_for_shape(cuda, *SHAPE[:4], torch.bfloat16)[0] == "cuda"
    assert dispatch.select_backend_for_shape(torch.device("cpu"), *SHAPE[:4], torch.bfloat16)[0] != "triton"


def test_the_op_asks_with_its_call_shape(monkeypatch):
    from vlmteach_fast.ops import lora

    seen = []
    monkeypatch.setattr(lora, "select_backend_for_shape", lambda *a: seen.append(a) or ("reference", "test"))
    x = torch.randn(2, 5, 12)
    lora.lora_linear(x, torch.randn(7, 12), None, torch.randn(3, 12), torch.randn(7, 3), 1.0)
    assert seen == [(torch.device("cpu"), 10, 12, 7, 3, torch.float32)]


def test_doctor_prints_the_choice_and_why(fake_gpu):
    fake_gpu(_rows(reference=1.38, triton=3.42))
    lines = measured.describe(measured.load_table(), GPU, _all_usable)
    assert lines[0] == f"measured LoRA table (2 rows): {GPU}"
    assert lines[1].startswith("  16384x3072->3072 r16 bfloat16: reference (measured on NVIDIA H200")
    assert "triton 3.42 ms" in lines[1]
    res = subprocess.run([sys.executable, "-m", "vlmteach_fast.cli", "doctor"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0 and "measured LoRA table" in res.stdout


def _bench_json(device, **ms):
    return {"benchmarks": [
        {"extra_info": dict(provider=p, mode="full", device=device, tokens=16384, features=3072, rank=16,
                            dtype="torch.bfloat16"), "stats": {"median": t / 1e3}} for p, t in ms.items()]}


def test_table_writer_replaces_only_the_measured_devices_rows(tmp_path):
    lora_table = bench_module("lora_table")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": [dict(device="Other GPU", tokens=1, in_features=2, out_features=2, rank=1,
                                               dtype="float16", backend="reference", ms=1.0),
                                          dict(device=GPU, tokens=1, in_features=2, out_features=2, rank=1,
                                               dtype="float16", backend="triton", ms=9.0)]}))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(_bench_json(GPU, reference=1.38, triton=1.1, peft=1.4, base=0.9, fused=1.38)))
    assert lora_table.main([str(bench), "--table", str(table)]) == 0
    rows = measured.parse_rows(json.loads(table.read_text()))
    assert {(r.device, r.backend) for r in rows} == {("Other GPU", "reference"), (GPU, "reference"), (GPU, "triton")}
    assert choose(rows, GPU, *SHAPE, _all_usable)[0] == "triton"


def test_gpu_check_step3_dry_run_writes_the_table_and_measures_each_backend(tmp_path):
    out = tmp_path / "gc"
    res = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), "--dry-run", "--steps", "3",
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=240,
                         env=dict(os.environ, PYTHON=sys.executable))  # this interpreter, not the first on PATH
    assert res.returncode == 0, res.stdout + res.stderr
    rows = measured.parse_rows(json.loads((out / "lora_backends.json").read_text()))
    assert {r.backend for r in rows} == {"reference"} and {r.device for r in rows} == {"cpu"}
    providers = {b["extra_info"]["provider"] for b in json.loads((out / "step3_lora.json").read_text())["benchmarks"]}
    assert providers == {"base", "peft", "fused", "reference"}  # triton, cuda, compile: GPU only, skipped


def test_bench_compile_row_is_checked_against_the_reference_and_skipped_without_a_gpu(monkeypatch):
    bench = bench_module("bench_lora")
    assert bench.PROVIDERS[-1] == "compile" and set(bench.FORCED) == {"reference", "triton", "cuda"}
    if not bench.CUDA:
        assert bench._skip_reason("compile") == "compile: GPU only (CPU timings of it would mean nothing)"
        assert bench._skip_reason("reference") is None
    # the compiled row's correctness check reads its PEFT layer's weights (compiled eagerly here: no compiler needed)
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: fn)
    layer = bench._layer("compile", 32, 4, torch.float32)
    x = torch.randn(9, 32, requires_grad=True)
    bench._check_against_reference(layer, "compile", x, torch.randn(9, 32))
