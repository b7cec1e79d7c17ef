"""The cost model: one rule for guided steps, backward and recompute, and the reasoner reporting what it ran."""

import pytest
import torch

from vlmteach_fast.cost import BACKWARD_FORWARD_RATIO, CostMeter, CostRecord, DenoiserCost, denoiser_cost
from vlmteach_fast.reasoner import LoRASpec, Reasoner
from vlmteach_fast.testing import tiny_wan_pipeline


def test_denoiser_cost_rules():
    assert denoiser_cost(4, guidance_scale=1.0) == DenoiserCost(4, 0, 0)
    assert denoiser_cost(4, guidance_scale=5.0, grad_steps=2, checkpointed_steps=1) == DenoiserCost(8, 4, 2)
    assert DenoiserCost(3, 2, 1).equiv == 3 + BACKWARD_FORWARD_RATIO * 2 + 1
    rec = CostRecord(denoiser_forward=3, denoiser_backward=2, denoiser_recompute=1)
    assert rec.denoiser_equiv == DenoiserCost(3, 2, 1).equiv == rec.to_dict()["denoiser_equiv"]


@pytest.fixture(scope="module")
def reasoner():
    return Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("steps,grad_steps,checkpoint", [(1, 1, None), (4, 1, None), (4, 3, None), (4, 3, False),
                                                         (4, 3, "all_but_last"), (4, 2, True)])
def test_planned_cost_is_what_predict_reports_and_the_counter_sees(reasoner, steps, grad_steps, checkpoint, guidance):
    prep = reasoner.prepare("a ball", num_frames=5, height=32, width=32, seed=0, guidance_scale=guidance,
                            max_sequence_length=16)
    before = reasoner.usage()
    mode = "one_step" if steps == 1 else "k_step"
    kw = {} if mode == "one_step" else dict(steps=steps, grad_steps=grad_steps)
    out = reasoner.predict(prep, mode=mode, checkpoint=checkpoint, **kw)
    planned = Reasoner.planned_cost(steps, grad_steps, guidance, checkpoint)
    assert out.cost == planned
    per = 2 if guidance > 1 else 1
    assert planned.forward == steps * per and planned.backward == grad_steps * per
    assert reasoner.usage().denoiser_evals - before.denoiser_evals == planned.forward
    with torch.no_grad():  # no graph: nothing to go back through
        assert reasoner.predict(prep, mode=mode, checkpoint=checkpoint, **kw).cost.backward == 0


def test_meter_counts_what_it_is_told_and_reads_the_reasoner(reasoner):
    prep = reasoner.prepare("a ball", num_frames=5, height=32, width=32, seed=0, max_sequence_length=16)
    meter = CostMeter(reasoner)
    pred = reasoner.predict(prep, mode="k_step", steps=3, grad_steps=2)
    meter.count_light_decode()
    meter.count_reward()
    meter.count_backward(pred.cost)
    meter.count_generate(2)
    reasoner.sample(prep, steps=2)
    rec = meter.finish()
    assert (rec.denoiser_forward, rec.denoiser_backward, rec.denoiser_recompute) == (3 + 2, 2, 2)
    assert (rec.light_decodes, rec.reward_calls, rec.reward_backward, rec.generate_calls, rec.full_decodes) == \
        (1, 1, 1, 2, 1)
    assert rec.seconds > 0 and rec.memory_kind == "process_rss_peak"


def test_light_decoder_is_built_once_per_config(reasoner, tmp_path):
    from vlmteach_fast.reasoner import LightDecoderConfig

    cfg = LightDecoderConfig(kind="full", cache_dir=str(tmp_path))
    assert reasoner.light_decoder(cfg) is reasoner.light_decoder(LightDecoderConfig(kind="full", cache_dir=str(tmp_path)))
    assert reasoner.light_decoder(cfg) is not reasoner.light_decoder(LightDecoderConfig(kind="full", frames="last",
                                                                                          cache_dir=str(tmp_path)))


_MALLOC_PROBE = """
import ctypes, sys
from vlmteach_fast.cost import keep_freed_memory
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblks
block = libc.malloc(24 << 20)
print(kept, libc.mallinfo2().hblks - before)  # 1: the 24 MiB block was mapped from the OS, 0: from the heap
libc.free(ctypes.c_void_p(block))
"""


def test_keep_freed_memory_serves_large_buffers_from_the_heap():
    import ctypes
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("not glibc >= 2.33: keep_freed_memory has nothing to set (or cannot be observed)")

    def probe(mode):  # a fresh process each: glibc raises its threshold by itself once a mapped block is freed
        out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE, mode], capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert probe("default") == ["None", "1"]
    assert probe("keep") == ["True", "0"]
