"""The shape-only account (vlmteach_fast.plan): it gives the numbers a real run gives, it sees a kept activation,
the memory levers do what they say, and the planner picks settings that fit or refuses by name."""

import pytest
import torch

from vlmteach_fast.plan import ShapeOnlyRun, account_run
from vlmteach_fast.plan.planner import parse_bytes, plan
from vlmteach_fast.plan.shapes import DRY_GEOMETRY
from vlmteach_fast.reasoner import LoRASpec, Reasoner, TensorMemoryTracker
from vlmteach_fast.testing import make_qwen_vl, tiny_wan_pipeline

STEP = ("predict", "light_decode", "reward_fwd", "reward_bwd", "denoiser_bwd", "optimizer")


@pytest.fixture(scope="module")
def both():
    return account_run(DRY_GEOMETRY, dry=True, meta=True), account_run(DRY_GEOMETRY, dry=True, meta=False)


def test_shape_only_account_equals_the_real_one(both):
    meta, real = both
    assert meta["weights_bytes"] == real["weights_bytes"]
    for name in meta["phases"]:
        m, r = meta["phases"][name], real["phases"][name]
        assert m["flops"] == r["flops"], name
        assert m["peak_op"] == r["peak_op"], name
        if name in STEP:  # the step, to the byte and the kernel
            assert (m["peak_bytes"], m["kernels"], m["bytes_moved"]) == (r["peak_bytes"], r["kernels"],
                                                                         r["bytes_moved"]), name
        else:  # the candidate: a few scalars the libraries make only off the host (0-dim tensors), no more
            assert abs(m["peak_bytes"] - r["peak_bytes"]) <= 512 and abs(m["kernels"] - r["kernels"]) <= 1, name
    assert meta["peak_bytes"] > sum(meta["weights_bytes"].values())


def _mlp_run(meta: bool, keep: bool) -> int:
    device = "meta" if meta else "cpu"
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64)).to(device)
    kept = []
    if keep:
        model[1].register_forward_hook(lambda m, i, o: kept.append(o * 1.0))  # one more (32, 256) fp32 alive
    with ShapeOnlyRun(meta=meta) as run:
        run.adopt(model)
        with run.phase("step"):
            model(torch.ones(32, 64, device=device, requires_grad=True)).sum().backward()
    return run.phases["step"].peak_bytes


@pytest.mark.parametrize("meta", [True, False])
def test_one_more_kept_activation_moves_the_peak_by_its_bytes(meta):
    assert _mlp_run(meta, keep=True) - _mlp_run(meta, keep=False) == 32 * 256 * 4


def test_attention_is_counted_as_a_flash_kernel_not_a_matrix():
    q = torch.empty(1, 2, 4096, 64, device="meta", dtype=torch.bfloat16, requires_grad=True)
    with ShapeOnlyRun() as run, run.phase("attn"):
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    # output + float32 log-sum-exp, not the 2 x 4096 x 4096 scores
    assert run.phases["attn"].peak_bytes <= 2 * out.numel() * 2 + 2 * 4096 * 4 + q.numel() * 2
    assert run.phases["attn"].flops == 4 * 2 * 4096 * 4096 * 64


def test_adapter_on_the_last_block_keeps_nothing_below_it():
    pipe = tiny_wan_pipeline("ti2v")
    saved = {}
    for last in (None, 1):
        pipe_n = tiny_wan_pipeline("ti2v")
        r = Reasoner.from_pipeline(pipe_n, LoRASpec(rank=4, last_blocks=last))
        prep = r.prepare("a ball", torch.rand(3, 64, 64), num_frames=9, height=64, width=64, seed=0)
        with TensorMemoryTracker() as mem:
            pred = r.predict(prep)
            saved[last] = mem.current_bytes  # what the graph keeps for backward
        pred.latents.float().pow(2).mean().backward()
        grads = {n: p.grad for n, p in pipe_n.transformer.named_parameters() if p.requires_grad}
        assert grads and all(g is not None for g in grads.values())
        if last == 1:
            first_adapted = len(pipe_n.transformer.blocks) - 1
            assert all(n.startswith(f"blocks.{first_adapted}.") for n in grads)
    assert saved[1] < saved[None]
    with pytest.raises(ValueError, match="last_blocks"):
        Reasoner.from_pipeline(pipe, LoRASpec(rank=4, last_blocks=len(pipe.transformer.blocks) + 1))
    with pytest.raises(ValueError, match="last_blocks"):
        LoRASpec(last_blocks=0)


def test_teacher_layer_checkpointing_keeps_less_and_gives_the_same_gradient():
    from vlmteach_fast.teacher import RewardConfig, VLMTeacher

    model, tok = make_qwen_vl()
    out = {}
    for ck in (False, True):
        teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=64 * 64, checkpoint_layers=ck))
        frames = torch.rand(1, 9, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
        with TensorMemoryTracker() as mem:
            reward = teacher.reward(frames, ["Is it red?", "Does it move?"]).reward.sum()
            kept = mem.current_bytes
        reward.backward()
        out[ck] = (kept, frames.grad)
    assert out[True][0] < out[False][0]
    torch.testing.assert_close(out[True][1], out[False][1], rtol=0, atol=0)
    assert all("forward" not in layer.__dict__ for layer in model.model.language_model.layers)  # restored


def test_planner_picks_the_first_settings_that_fit_and_refuses_below_the_weights():
    geo = dict(num_frames=DRY_GEOMETRY[0], height=DRY_GEOMETRY[1], width=DRY_GEOMETRY[2])
    roomy = plan(**geo, gpu_memory="1GiB", headroom=0, dry=True)
    assert roomy["fits"] and not any(roomy["settings"].values())
    assert len(roomy["options"]) == 1 and roomy["steps_within_budget"] >= 1
    peaks = [o["peak_gib"] for o in plan(**geo, gpu_memory=roomy["peak_gib"] * 2**30 - 1, headroom=0,
                                         dry=True)["options"]]
    assert len(peaks) > 1  # the first did not fit, so cheaper-in-memory settings were tried
    tight = plan(**geo, gpu_memory=int(min(peaks) * 2**30), headroom=0, dry=True)
    assert tight["fits"] and tight["peak_gib"] == min(peaks) and tight["settings"] != roomy["settings"]
    with pytest.raises(ValueError, match="below the models' weights"):
        plan(**geo, gpu_memory="1KiB", headroom=0, dry=True)
    with pytest.raises(ValueError, match="num_frames"):
        plan(num_frames=6, height=32, width=64, dry=True)
    with pytest.raises(ValueError, match="video"):
        plan("wan9", dry=True)
    assert parse_bytes("80GiB") == 80 * 2**30 and parse_bytes("1.5GB") == 1_500_000_000
    with pytest.raises(ValueError, match="gpu_memory"):
        parse_bytes("lots")


def test_plan_cli_prints_one_json_object_and_refuses_bad_input_in_one_line(capsys):
    import json

    from vlmteach_fast.cli import main

    rc = main(["plan", "--dry-run", "--frames", "5", "--height", "32", "--width", "64", "--gpu-memory", "1GiB",
               "--headroom", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and {"peak_gib", "step_over_candidate", "steps_within_budget", "settings"} <= set(out)
    assert main(["plan", "--frames", "6", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "num_frames" in err and len(err.splitlines()) == 1
    assert main(["plan", "--gpu-memory", "lots"]) == 2 and "gpu_memory" in capsys.readouterr().err


def test_an_offloaded_text_encoder_leaves_the_device_after_the_prompt():
    held = account_run(DRY_GEOMETRY, dry=True)
    offloaded = account_run(DRY_GEOMETRY, dry=True, offload_text_encoder=True)
    encoder = held["weights_bytes"]["text_encoder"]
    assert encoder > 0
    for name in STEP:
        assert held["phases"][name]["peak_bytes"] - offloaded["phases"][name]["peak_bytes"] == encoder, name
    with pytest.raises(TypeError, match="offload_text_encoder"):
        from vlmteach_fast.instance import SamplingConfig

        SamplingConfig(offload_text_encoder="yes")
