"""Import never fails because a compiled part is missing: one warning, then the op falls back; doctor explains."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BLOCK_AND_RUN = textwrap.dedent("""
    import sys, warnings
    class Block:  # makes `import vlmteach_fast._C_cpu` fail the way a missing or mismatched build does
        def find_spec(self, name, path=None, target=None):
            if name == "vlmteach_fast._C_cpu":
                raise ImportError(__MESSAGE__)
    sys.meta_path.insert(0, Block())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch, vlmteach_fast
        from vlmteach_fast.ops import select_backend, lora_linear
    ours = [w for w in caught if "vlmteach_fast" in str(w.message)]
    print("WARNINGS", len(ours))
    for w in ours:
        print("MESSAGE", w.message)
    print("BACKEND", select_backend(torch.device("cpu"))[0])
    x, w_, a, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(2, 8), torch.randn(5, 2)
    ref = x @ w_.t() + 0.5 * (x @ a.t()) @ b.t()
    print("OK", torch.allclose(lora_linear(x, w_, None, a, b, 0.5), ref, atol=1e-5))
""")


def _run(code: str, **env):
    full_env = {**os.environ, "TRITON_INTERPRET": "0", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=full_env,
                          timeout=300)


@pytest.mark.parametrize("message,expect", [
    ("No module named 'vlmteach_fast._C_cpu'", "_C_cpu is not built"),
    ("/x/_C_cpu.so: undefined symbol: _ZN3c104impl", "_C_cpu failed to load with torch"),
])
def test_missing_cpu_extension_warns_once_and_falls_back(message, expect):
    res = _run(_BLOCK_AND_RUN.replace("__MESSAGE__", repr(message)))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "WARNINGS 1" in out, out
    assert expect in out, out
    assert "BACKEND reference" in out and "OK True" in out, out


def test_disabled_backends_fall_back_to_reference_silently():
    res = _run(_BLOCK_AND_RUN.replace("__MESSAGE__", "'unused'").replace("vlmteach_fast._C_cpu\"", "nothing\""),
               VLMTEACH_DISABLE="cpu,triton")
    assert res.returncode == 0, res.stderr
    assert "WARNINGS 0" in res.stdout and "BACKEND reference" in res.stdout and "OK True" in res.stdout


def test_doctor_reports_backends_and_choice():
    res = _run("from vlmteach_fast.cli import main; raise SystemExit(main(['doctor']))")
    assert res.returncode == 0, res.stderr
    for needle in ("torch ", "triton", "backends:", "op lora_linear uses:", "on cpu"):
        assert needle in res.stdout, res.stdout
    res = _run("from vlmteach_fast.cli import main; raise SystemExit(main(['doctor']))", VLMTEACH_DISABLE="cpu")
    assert "on cpu : reference" in res.stdout and "disabled by VLMTEACH_DISABLE" in res.stdout, res.stdout


def test_example_command_runs_and_agrees_with_peft():
    res = _run("from vlmteach_fast.cli import main; raise SystemExit(main(['example', '--steps', '3', "
               "'--features', '64', '--tokens', '16']))")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "fused vs PEFT output" in res.stdout and "swapped 2 LoRA layer(s)" in res.stdout
