"""optimize (16 steps) vs Best-of-5 on the same small models and instance, and optimize's per-step cost breakdown.

Run:  python -m pytest bench/bench_optimize.py --benchmark-only --benchmark-json=bench/optimize.json
      python bench/report.py bench/optimize.json

Models: the tiny random Wan2.2-TI2V-style pipeline and a tiny random Qwen2-VL teacher (both from
vlmteach_fast.testing), 9 frames at 64 x 64. Random weights: this measures cost, not quality. The paper's claim
to check: 16 optimization steps cost no more than Best-of-5 (one-step mode, light decoder, 4-step final sample).
"""

import time

import pytest
import torch

from vlmteach_fast.baselines import best_of_n
from vlmteach_fast.instance import SamplingConfig, score_frames
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.reasoner import LightDecoderConfig, LoRASpec, Reasoner
from vlmteach_fast.teacher import RewardConfig, VLMTeacher, as_queries
from vlmteach_fast.testing import make_qwen_vl, tiny_wan_pipeline

GEOM = dict(num_frames=9, height=64, width=64)
QUERIES = ["Is the red ball on the green square at the end?", "Does the ball stay in one piece?"]
PROMPT = "move the red ball onto the green square"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # Tiny models: overhead-bound, and with 2 threads OpenMP waiting made steps up to 100x slower whenever another
    # process used a core (dev machine). One thread gives stable numbers for both methods alike.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _setup(tmp_path_factory)
    torch.set_num_threads(before)


def _setup(tmp_path_factory):
    model, tok = make_qwen_vl()
    teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=64 * 64, process_frames=4))
    pipe = tiny_wan_pipeline("ti2v")
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    cache = str(tmp_path_factory.mktemp("ldc"))
    return pipe, teacher, image, cache


def _cfg(cache, **kw):
    base = dict(max_steps=16, patience=1000, yes_threshold=1.0, lr=1e-2, progress=False, lora=LoRASpec(rank=16),
                decoder=LightDecoderConfig(kind="linear", cache_dir=cache), sampling=SamplingConfig(final_steps=4, **GEOM))
    base.update(kw)
    return OptimizeConfig(**base)


@pytest.mark.parametrize("method", ["optimize16", "best_of_5"])
def test_optimize_vs_best_of_5(benchmark, setup, method):
    pipe, teacher, image, cache = setup
    benchmark.group = "optimize (16 steps) vs best_of_n (5), tiny Wan + tiny Qwen2-VL, 9x64x64, CPU"
    if method == "optimize16":
        optimize(pipe, teacher, PROMPT, image=image, queries=QUERIES, config=_cfg(cache, max_steps=1))  # warm-up
        run = lambda: optimize(pipe, teacher, PROMPT, image=image, queries=QUERIES, config=_cfg(cache))  # noqa: E731
    else:
        run = lambda: best_of_n(pipe, teacher, PROMPT, image=image, queries=QUERIES, n=5,  # noqa: E731
                                sampling=SamplingConfig(final_steps=4, **GEOM))
    result = benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info.update(provider=method, reference="best_of_5", cost=result.cost.to_dict())
    # Outside the timed part: the result is what it claims to be. The returned video, scored again by the teacher,
    # gives the P(Yes) the method reported (fp32, same frames, same questions: reordering only).
    _, p_yes = score_frames(teacher, result.frames, as_queries(QUERIES))
    reported = result.final_p_yes if method == "optimize16" else result.p_yes
    assert p_yes == pytest.approx(reported, abs=1e-5)
    if method == "optimize16":
        assert len(result.history) == 16 and result.stop_reason == "max_steps"
    else:  # Best-of-N returns its best candidate
        assert result.p_yes == result.candidates[0]["p_yes"]
        assert result.candidates[0]["reward"] == max(c["reward"] for c in result.candidates)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("method", ["optimize", "best_of_n"])
def test_budget_best_of_n(benchmark, setup, method, n):
    """``budget="best_of_n:N"`` against Best-of-N itself: optimize's speed-up is Best-of-N's seconds over its own
    (>= 1 keeps the promise); extra_info has both cost records, optimize's with its plan."""
    pipe, teacher, image, cache = setup
    benchmark.group = f"optimize at best_of_n:{n} vs best_of_n({n}), tiny Wan + tiny Qwen2-VL, 9x64x64, CPU"
    sampling = SamplingConfig(final_steps=4, **GEOM)
    if method == "optimize":
        cfg = _cfg(cache, budget=f"best_of_n:{n}")
        optimize(pipe, teacher, PROMPT, image=image, queries=QUERIES, config=_cfg(cache, max_steps=1))  # warm-up
        run = lambda: optimize(pipe, teacher, PROMPT, image=image, queries=QUERIES, config=cfg)  # noqa: E731
    else:
        run = lambda: best_of_n(pipe, teacher, PROMPT, image=image, queries=QUERIES, n=n,  # noqa: E731
                                sampling=sampling)
    result = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(provider=method, reference="best_of_n", cost=result.cost.to_dict())
    if method == "optimize":  # outside the timed part: the plan kept what it promised
        extra = result.cost.extra
        assert extra["budget_promise"] == "seconds" and extra["planned_seconds"] <= extra["budget_seconds"]


def test_per_step_breakdown(benchmark, setup):
    """Seconds of each part of one optimization step (median of 8 steps), in extra_info."""
    pipe, teacher, image, cache = setup
    reasoner = Reasoner.from_pipeline(tiny_wan_pipeline("ti2v"), LoRASpec(rank=16))
    prep = reasoner.prepare(PROMPT, image, seed=0, **GEOM)
    decoder = reasoner.light_decoder(LightDecoderConfig(kind="linear", cache_dir=cache))
    opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=1e-2)
    parts = {k: [] for k in ("predict", "light_decode", "reward_fwd", "backward", "optimizer")}

    def step():
        t = [time.perf_counter()]
        pred = reasoner.predict(prep)
        t.append(time.perf_counter())
        frames = decoder(pred.latents)
        t.append(time.perf_counter())
        loss = -teacher.reward(frames, QUERIES).reward.mean()
        t.append(time.perf_counter())
        opt.zero_grad()
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        for k, a, b in zip(parts, t, t[1:]):
            parts[k].append(b - a)

    benchmark.group = "optimize step breakdown"
    benchmark.pedantic(step, rounds=8, warmup_rounds=1, iterations=1)
    med = {k: sorted(v)[len(v) // 2] for k, v in parts.items()}
    benchmark.extra_info.update(provider="one_step", breakdown_seconds=med)


@pytest.fixture(scope="module")
def toy_reasoners():
    from vlmteach_fast import toy

    out = {}
    for ffn in (False, True):  # one pipeline per LoRA spec (a pipeline carries one reasoner adapter)
        r = Reasoner.from_pipeline(toy.load_pipeline(), LoRASpec(rank=8, include_ffn=ffn))
        inst = toy.make_instances(1, seed=0)[0]
        prep = r.prepare(inst.prompt, inst.first_frame, num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE)
        out[ffn] = (r, prep)
    return out


@pytest.mark.parametrize("ffn", [False, True], ids=["attention_lora", "attention_ffn_lora"])
@pytest.mark.parametrize("adapter", ["zero_adapter", "bypassed"])
def test_candidate_sample_with_zero_adapter_vs_bypassed(benchmark, toy_reasoners, ffn, adapter):
    """A Best-of-N candidate's sample on the shipped toy video model: with a zero LoRA in place (what candidates
    cost before they bypassed it) against the adapter layers bypassed (a plain pipeline's cost). Same video."""
    import contextlib

    from vlmteach_fast import toy

    r, prep = toy_reasoners[ffn]
    r.reset_lora()
    ctx = r.lora_bypassed if adapter == "bypassed" else contextlib.nullcontext

    def run():
        with ctx():
            return r.sample(prep, steps=toy.SAMPLE_STEPS).frames

    frames = benchmark.pedantic(run, rounds=15, warmup_rounds=2)
    assert torch.isfinite(frames).all()


@pytest.fixture(scope="module")
def toy_demo_setup():
    """The demo's optimize setting on the shipped toy models, one held-out instance (one torch thread)."""
    import dataclasses

    from vlmteach_fast import toy
    from vlmteach_fast.demo import demo_optimize_config
    from vlmteach_fast.instance import setup_instance

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    teacher = toy.load_teacher()
    inst = toy.make_instances(1, seed=0)[0]
    queries = toy.queries_for(inst)
    base = demo_optimize_config()
    base = dataclasses.replace(base, sampling=dataclasses.replace(
        base.sampling, num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE, final_steps=toy.SAMPLE_STEPS))
    setup = setup_instance(toy.load_pipeline(), teacher, inst.prompt, inst.first_frame, queries, base.sampling,
                           base.lora, base.max_process)
    yield setup, teacher, base
    torch.set_num_threads(before)


@pytest.mark.parametrize("unit", ["candidate", "step_adapter_on_4_of_4", "step_adapter_on_3_of_4",
                                  "step_adapter_on_2_of_4"])
def test_toy_demo_step_vs_candidate(benchmark, toy_demo_setup, unit):
    """One optimization step of the demo's setting (k-step 4/3, cross-attention LoRA) against one fair Best-of-N
    candidate (a plain sample, full decode, teacher score), and the step when the adapter acts on the last 3 or 2
    sampling steps only (``lora_steps``; the frozen steps before run once per instance, cached; grad steps = the
    adapter's steps). The step / candidate ratio decides how many steps fit in ``best_of_n:N``."""
    import dataclasses

    from vlmteach_fast.cost import CostMeter
    from vlmteach_fast.optimization import _StepLoop

    setup, teacher, base = toy_demo_setup
    reasoner = setup.reasoner
    reasoner.reset_lora()
    benchmark.group = "toy demo: one optimization step vs one Best-of-N candidate (1 thread)"
    if unit == "candidate":
        def run():
            with reasoner.lora_bypassed():
                frames = reasoner.sample(setup.prepared, steps=base.sampling.final_steps).frames
            return score_frames(teacher, frames, setup.queries)[1]
    else:
        k = int(unit.split("_")[3])
        cfg = dataclasses.replace(base, lora_steps=None if k == 4 else k, grad_steps=min(base.grad_steps, k))
        loop = _StepLoop(setup, teacher, cfg, CostMeter(reasoner), None, max_steps=10_000)
        count = iter(range(10_000))

        def run():
            return loop._step(next(count)).p_yes

    p_yes = benchmark.pedantic(run, rounds=9, warmup_rounds=2)
    reasoner.reset_lora()
    assert all(0.0 <= p <= 1.0 for p in p_yes)
