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


def test_keep_freed_memory_sets_glibc_thresholds_or_changes_nothing():
    import ctypes

    from vlmteach_fast.cost import keep_freed_memory

    try:
        ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc: nothing to set, and it says so
        assert keep_freed_memory() is False
        return
    assert keep_freed_memory() is True  # glibc accepted both parameters (an unknown one returns 0)
