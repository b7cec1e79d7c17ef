"""optimize(): the loop really optimizes, keeps the best adapter, stops for the right reason, survives NaNs and
interrupts, respects budgets, and its saved adapter reproduces the final sample in a fresh pipeline."""

import dataclasses
import json
import math
import os
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmteach_fast.cost import UnitCosts
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.reasoner import LightDecoderConfig, LoRASpec, Reasoner
from vlmteach_fast.testing import GEOM, BrightnessTeacher, first_frame, tiny_ti2v_pipeline, tiny_wan_pipeline

PROMPT = "make the ball reach the square"


def cfg(**kw):
    base = dict(lr=5e-2, max_steps=4, patience=100, progress=False, lora=LoRASpec(rank=4),
                decoder=LightDecoderConfig(kind="full"), sampling=SamplingConfig(final_steps=2, **GEOM))
    base.update(kw)
    return OptimizeConfig(**base)



def test_vlm_teacher_reward_rises_and_final_sample_uses_best_adapter(pipe, tmp_path):
    from vlmteach_fast.teacher import RewardConfig, VLMTeacher
    from vlmteach_fast.testing import make_qwen_vl

    model, tok = make_qwen_vl()
    teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, process_frames=2))
    res = optimize(pipe, teacher, PROMPT, image=first_frame(),
                   queries=["Is the red ball on the green square?", "Is there exactly one ball?"],
                   config=cfg(max_steps=4, lr=2e-2, keep_initial_if_better=False,
                              decoder=LightDecoderConfig(kind="linear", cache_dir=str(tmp_path))))
    losses = [h.loss for h in res.history]
    assert len(losses) == 4 and res.stop_reason == "max_steps"
    assert losses[-1] < losses[0], losses  # the teacher's reward went up
    best = max(range(4), key=lambda i: -losses[i])
    assert res.best_step == best
    # the final video is the sample of the kept adapter
    r = res.reasoner
    r.restore_lora(res.adapter)
    prep = r.prepare(PROMPT, first_frame(), **GEOM, seed=0)
    torch.testing.assert_close(r.sample(prep, steps=2).frames, res.frames, rtol=0, atol=1e-6)


def test_stop_all_yes(pipe):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(yes_threshold=1e-6))
    assert res.stop_reason == "all_yes" and len(res.history) == 1


def test_stop_plateau(pipe):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(patience=2, min_delta=1e6,
                                                                                   max_steps=10))
    # step 0 sets the best loss (inf -> loss), steps 1 and 2 fail to improve by 1e6: stop after 3 steps
    assert res.stop_reason == "plateau" and len(res.history) == 3


def test_stop_max_steps_and_counts(pipe):
    # The tiny random pipeline barely responds to its LoRA (loss changes ~1e-4 either way), so whether the loop
    # really optimizes is tested on the trained toy model with an oracle reward (tests/test_toy_method.py).
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(max_steps=3))
    assert res.stop_reason == "max_steps" and len(res.history) == 3
    # the last step is scored but not followed by an update: nothing would ever score the adapter it made
    assert res.cost.reward_backward == 2 and res.cost.denoiser_backward == 2 and res.cost.light_decodes == 3
    assert [math.isnan(h.grad_norm) for h in res.history] == [False, False, True]


def test_last_step_runs_without_autograd(pipe):
    # its update is skipped, so its forward needs no graph: on real models that is the reward's activations freed
    seen = []

    class Recording(BrightnessTeacher):
        def reward(self, frames, queries, **kwargs):
            seen.append((torch.is_grad_enabled(), frames.requires_grad))
            return super().reward(frames, queries, **kwargs)

    res = optimize(pipe, Recording(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=3, score_initial=False, keep_initial_if_better=False))
    assert len(res.history) == 3
    assert seen[:3] == [(True, True), (True, True), (False, False)]  # then the finish scores without grad


@pytest.mark.parametrize("checkpoint,recomputed", [(None, 2), (True, 2), ("all_but_last", 1), (False, 0)])
def test_checkpoint_knob_reaches_the_prediction(pipe, checkpoint, recomputed):
    # None keeps predict's rule (checkpoint every gradient step when there are several); False keeps activations
    c = cfg(mode="k_step", steps=2, grad_steps=2, checkpoint=checkpoint, max_steps=2, score_initial=False,
            keep_initial_if_better=False)
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=c)
    assert res.cost.denoiser_backward == 2 and res.cost.denoiser_recompute == recomputed  # one update of 2 steps


def test_checkpoint_knob_rejects_other_values():
    with pytest.raises(ValueError, match="OptimizeConfig.checkpoint"):
        OptimizeConfig(checkpoint="sometimes")


@pytest.mark.parametrize("reuse", [True, False])
def test_k_step_final_video_is_the_kept_prediction_decoded(pipe, reuse):
    # k-step over the final step count: the loop's prediction of an adapter is that adapter's final sample, so the
    # final video is its full decode (no new sample) and equals a fresh sample with the kept adapter
    c = cfg(mode="k_step", steps=2, grad_steps=1, max_steps=3, keep_initial_if_better=False, reuse_prediction=reuse)
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=c)
    assert res.cost.denoiser_forward == 2 + 3 * 2 + (0 if reuse else 2)  # plain sample, 3 steps, final sample
    r = res.reasoner
    r.restore_lora(res.adapter)
    prep = r.prepare(PROMPT, first_frame(), **GEOM, seed=0)
    torch.testing.assert_close(r.sample(prep, steps=2).frames, res.frames, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reuse", [True, False])
def test_lora_steps_final_video_is_the_kept_adapter_on_the_last_steps(pipe, reuse):
    # the adapter acts on the last of 2 steps: the frozen first step runs once for the whole run, and the final
    # video (decoded prediction or new sample) is what a sample with the same split gives
    c = cfg(mode="k_step", steps=2, grad_steps=1, lora_steps=1, max_steps=3, keep_initial_if_better=False,
            reuse_prediction=reuse, sampling=SamplingConfig(final_steps=2, **GEOM))
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=c)
    assert res.cost.denoiser_forward == 2 + 1 + 3 * 1 + (0 if reuse else 1)  # plain sample, prefix, steps, final
    r = res.reasoner
    r.restore_lora(res.adapter)
    prep = r.prepare(PROMPT, first_frame(), **GEOM, seed=0)
    torch.testing.assert_close(r.sample(prep, steps=2, lora_steps=1).frames, res.frames, rtol=0, atol=1e-6)
    assert float((r.sample(prep, steps=2).frames - res.frames).abs().max()) > 1e-6  # not the all-steps adapter
    assert res.lora_steps == 1 and res.summary()["lora_steps"] == 1  # recorded: a stock pipeline would differ


def test_best_of_n_budget_charges_the_frozen_prefix_once(pipe):
    c = cfg(mode="k_step", steps=2, grad_steps=1, lora_steps=1, max_steps=50, budget="best_of_n:3",
            sampling=SamplingConfig(final_steps=2, **GEOM))
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=c)
    units = res.cost.extra["unit_costs"]
    assert units["prefix"] > 0 and res.cost.extra["planned_steps"] == UnitCosts(**units).steps_within(3, 1)


def test_score_final_off_reports_the_kept_steps_score_and_skips_the_final_scoring(pipe):
    base = dict(mode="k_step", steps=2, grad_steps=1, max_steps=3, score_initial=False)
    scored = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(**base))
    teacher = BrightnessTeacher()
    res = optimize(pipe, teacher, PROMPT, image=first_frame(), config=cfg(score_final=False, **base))
    torch.testing.assert_close(res.frames, scored.frames, rtol=0, atol=0)  # the same video
    assert res.cost.reward_calls == scored.cost.reward_calls - 1 == 3  # three steps, no final scoring
    assert res.final_p_yes == res.history[res.best_step].p_yes  # (here the loop's decoder is the full one)
    with pytest.raises(ValueError, match="score_final=False needs keep_initial_if_better=False or score_initial"):
        cfg(score_final=False)


def test_lora_steps_needs_k_step_over_the_final_steps():
    for kw in (dict(mode="one_step", lora_steps=1), dict(mode="k_step", steps=3, grad_steps=2, lora_steps=1),
               dict(mode="k_step", steps=3, grad_steps=1, lora_steps=2)):  # the last: final_steps is 2
        with pytest.raises(ValueError, match="OptimizeConfig.lora_steps"):
            cfg(**kw)


def test_unit_costs_plan_a_cheaper_last_step_and_finish():
    assert UnitCosts(candidate=1.0, step=0.5).steps_within(3, 1) == 2  # 3 - plain - final = 1 s: two full steps
    # a last step without update (0.25) and a finish without sampling (0.5): 3 - 1 - 0.5 = 1.5 s = 0.25 + 2 x 0.5
    assert UnitCosts(candidate=1.0, step=0.5, evaluation=0.25, finish=0.5).steps_within(3, 1) == 3
    assert UnitCosts(candidate=1.0, step=0.5, evaluation=0.25, finish=0.5).steps_within(1, 1) == 0
    with pytest.raises(ValueError, match="UnitCosts.finish"):
        UnitCosts(candidate=1.0, step=0.5, finish=-1.0)
    # the frozen steps before the adapter's run once per run: 0.5 s of prefix costs one step
    assert UnitCosts(candidate=1.0, step=0.5, evaluation=0.25, finish=0.5, prefix=0.5).steps_within(3, 1) == 2


@pytest.mark.parametrize("n,steps", [(3, 2), (4, 4)])
def test_best_of_n_budget_plans_steps_from_unit_costs(pipe, n, steps):
    # a step costs half a candidate; the plain and the final sample take two candidates of the n
    units = {"candidate": 1.0, "step": 0.5}
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=50, budget={"best_of_n": n, "unit_costs": units}))
    assert res.stop_reason == "budget" and len(res.history) == steps
    assert res.cost.extra["planned_steps"] == steps and res.cost.extra["unit_costs"] == units
    extra = res.cost.extra  # the promise is seconds: the steps that ran fit in n candidates' time
    assert extra["budget_promise"] == "seconds" and extra["budget_seconds"] == n * units["candidate"]
    assert extra["planned_seconds"] == UnitCosts(**units).planned_seconds(len(res.history), 1) <= n
    assert extra["best_of_n_denoiser_equiv"] == n * 2  # recorded beside it: two final steps per candidate


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 12), spent=st.integers(0, 1), candidate=st.floats(0.01, 10.0),
       step=st.floats(0.01, 10.0), evaluation=st.none() | st.floats(0.01, 10.0),
       finish=st.none() | st.floats(0.01, 10.0), prefix=st.none() | st.floats(0.01, 10.0))
def test_unit_costs_plan_the_most_steps_that_fit_and_never_more(n, spent, candidate, step, evaluation, finish, prefix):
    units = UnitCosts(candidate=candidate, step=step, evaluation=evaluation, finish=finish, prefix=prefix)
    steps, budget = units.steps_within(n, spent), n * candidate
    if steps:
        assert units.planned_seconds(steps, spent) <= budget * (1 + 1e-9)  # never over the promise
    assert units.planned_seconds(steps + 1, spent) > budget * (1 - 1e-9)  # and one more step would be


def test_best_of_n_keeps_a_seconds_or_evals_cap_given_beside_it(pipe):
    units = {"candidate": 1.0, "step": 0.01}  # the plan alone would allow the 50 steps of max_steps
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=50, budget={"best_of_n": 5, "unit_costs": units, "denoiser_evals": 8}))
    assert res.stop_reason == "budget" and res.cost.extra["planned_steps"] == 50 and len(res.history) < 50
    assert res.cost.denoiser_equiv <= 8


def test_best_of_n_budget_measures_steps_with_the_judge(pipe):
    # a judge scores every step, so the step the budget plans with must include its forward
    from vlmteach_fast.optimization import UNIT_COST_REPEATS

    judge = BrightnessTeacher()
    c = cfg(max_steps=50, budget="best_of_n:3", keep_initial_if_better=False)
    res = optimize(pipe, BrightnessTeacher(sharpness=4.0), PROMPT, image=first_frame(), config=c, judge=judge)
    # the measured steps and last steps, then every step of the run
    assert judge.calls == 2 * UNIT_COST_REPEATS + len(res.history)


def test_best_of_n_budget_measures_unit_costs_once_per_run(pipe):
    c = cfg(max_steps=50, budget="best_of_n:3", keep_initial_if_better=False)
    teacher = BrightnessTeacher()  # one run: the same models and settings
    first = optimize(pipe, teacher, PROMPT, image=first_frame(), config=c)
    again = optimize(pipe, teacher, PROMPT, image=first_frame(), config=c)
    units = first.cost.extra["unit_costs"]
    assert units["candidate"] > 0 and units["step"] > 0
    assert again.cost.extra["unit_costs"] == units  # measured once, reused: same step count, same video
    assert len(first.history) == len(again.history) == first.cost.extra["planned_steps"]
    assert torch.equal(first.frames, again.frames)


@pytest.mark.parametrize("evals,expected_steps", [(4, 0), (11, 2), (12, 2), (13, 3)])
def test_denoiser_eval_budget_allows_exactly_what_fits(pipe, evals, expected_steps):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=50, budget={"denoiser_evals": evals}))
    # initial sample 2 + final sample 2 + 3 per step
    assert res.stop_reason == "budget" and len(res.history) == expected_steps
    assert res.cost.denoiser_equiv == 4 + 3 * expected_steps <= evals


def test_seconds_budget_stops_early(pipe):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=50, budget={"seconds": 1e-3}))
    assert res.stop_reason == "budget" and len(res.history) == 0 and res.frames.shape == (1, 5, 3, 32, 32)


def test_nan_reward_is_survived(pipe):
    teacher = BrightnessTeacher(nan_at={2})  # call 0: initial sample; call 2: optimization step 1
    with pytest.warns(RuntimeWarning, match="non-finite loss or gradient at step 1"):
        res = optimize(pipe, teacher, PROMPT, image=first_frame(), config=cfg(max_steps=4))
    assert res.stop_reason == "max_steps" and [h.skipped for h in res.history] == [False, True, False, False]
    assert res.history[2].lr == pytest.approx(0.5 * res.history[0].lr)
    assert torch.isfinite(res.frames).all()
    assert all(torch.isfinite(v).all() for v in res.adapter.values())


def test_lr_schedule_sets_each_update_lr_and_composes_with_the_failure_decay(pipe):
    config = cfg(max_steps=4, lr_schedule="linear", lr_end=0.5)  # 3 updates: lr x 1, 0.75, 0.5
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=config)
    assert [h.lr for h in res.history[:3]] == pytest.approx([5e-2, 3.75e-2, 2.5e-2])
    teacher = BrightnessTeacher(nan_at={2})  # step 1 fails: its lr and the later ones are halved
    with pytest.warns(RuntimeWarning, match="lowered lr to 0.025"):
        res = optimize(pipe, teacher, PROMPT, image=first_frame(), config=config)
    assert [h.lr for h in res.history[:3]] == pytest.approx([5e-2, 3.75e-2, 1.25e-2])


def test_non_finite_frames_take_the_non_finite_step_path_instead_of_raising(pipe, monkeypatch):
    from vlmteach_fast.instance import as_reasoner
    from vlmteach_fast.teacher.base import check_frames

    class StrictTeacher(BrightnessTeacher):  # validates frames as the VLM teachers do: NaN frames raise
        def reward(self, frames, queries, **kwargs):
            return super().reward(check_frames(frames), queries, **kwargs)

    reasoner = as_reasoner(pipe, LoRASpec(rank=4))
    real, calls = reasoner.predict, []

    def predict(*args, **kwargs):  # optimization step 1 predicts NaN latents (e.g. a degenerate schedule)
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            out.latents = out.latents * float("nan")
        return out

    monkeypatch.setattr(reasoner, "predict", predict)
    with pytest.warns(RuntimeWarning, match="non-finite loss or gradient at step 1"):
        res = optimize(reasoner, StrictTeacher(), PROMPT, image=first_frame(), config=cfg(max_steps=3))
    assert [h.skipped for h in res.history] == [False, True, False]
    assert res.history[2].lr == pytest.approx(0.5 * res.history[0].lr)
    assert torch.isfinite(res.frames).all() and all(torch.isfinite(v).all() for v in res.adapter.values())


def test_repeated_nan_stops_as_diverged_with_best_so_far(pipe):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize(pipe, BrightnessTeacher(nan_at={"all"}), PROMPT, image=first_frame(),
                       config=cfg(max_steps=10, max_failures=3, score_initial=False))
    assert res.stop_reason == "diverged" and len(res.history) == 3
    assert res.best_step == -1 and all(torch.isfinite(v).all() for v in res.adapter.values())


def test_keyboard_interrupt_from_callback_returns_best_so_far(pipe):
    def callback(info):
        if info.step == 1:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(max_steps=6),
                       callback=callback)
    assert res.stop_reason == "interrupted" and len(res.history) == 2
    assert res.frames.shape == (1, 5, 3, 32, 32)


def test_saved_adapter_loads_into_fresh_pipeline_and_reproduces_final_sample(pipe, tmp_path):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=3, keep_initial_if_better=False), out_dir=tmp_path / "out")
    assert not res.used_initial and res.best_step >= 0
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["adapter", "history.json", "manifest.json", "result.json", "reward.png", "video.gif", "video.mp4"]
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [h["step"] for h in history] == [0, 1, 2]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["stop_reason"] == "max_steps" and result["cost"]["denoiser_backward"] == 2  # no update after the last

    fresh = tiny_ti2v_pipeline()
    fresh.load_lora_weights(str(tmp_path / "out" / "adapter"))
    r2 = Reasoner.from_pipeline(fresh, LoRASpec(rank=2, adapter_name="probe"))  # zero adapter: changes nothing
    prep = r2.prepare(PROMPT, first_frame(), **GEOM, seed=0)
    torch.testing.assert_close(r2.sample(prep, steps=2).frames, res.frames, rtol=0, atol=1e-5)


def test_keep_initial_if_better(pipe):
    """With a teacher that prefers dark videos but lr pushing nowhere useful, the plain sample may win: then the
    returned video is the initial one and the adapter is the fresh one."""
    res = optimize(pipe, BrightnessTeacher(sharpness=-8.0), PROMPT, image=first_frame(),
                   config=cfg(max_steps=2, lr=1e-9))
    if res.used_initial:
        torch.testing.assert_close(res.frames, res.initial_frames)
        assert res.best_step == -1 and all((v == 0).all() for k, v in res.adapter.items() if "lora_B" in k)
    else:  # tiny lr: the optimized video must then score at least as well as the plain one
        assert sum(res.final_p_yes) >= sum(res.initial_p_yes) - 1e-6


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(prompt=""), ValueError, "`prompt` must be a non-empty string"),
    (dict(image=None), ValueError, "`image` is required for the image-to-video"),
    (dict(image="/nonexistent/frame.png"), FileNotFoundError, "`image` file not found"),
    (dict(config="not a config"), TypeError, "`config` must be an OptimizeConfig"),
    (dict(teacher=object()), TypeError, "`teacher` must provide synthesize_queries"),
    (dict(queries=[]), ValueError, "at least one question"),
])
def test_bad_input_fails_before_heavy_work(pipe, kwargs, exc, pattern):
    teacher = kwargs.pop("teacher", BrightnessTeacher())
    args = dict(prompt=PROMPT, image=first_frame(), config=cfg())
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        optimize(pipe, teacher, **args)
    assert teacher.calls == 0 if isinstance(teacher, BrightnessTeacher) else True


def test_config_validation():
    with pytest.raises(ValueError, match="'best_of_n:5'"):
        OptimizeConfig(budget="best_of_five")
    with pytest.raises(ValueError, match="grad_steps must be <= steps=2"):
        OptimizeConfig(mode="k_step", steps=2, grad_steps=3)
    with pytest.raises(ValueError, match="mode must be 'one_step' or 'k_step'"):
        OptimizeConfig(mode="two_step")
    with pytest.raises(ValueError, match="unknown keys"):
        OptimizeConfig(budget={"minutes": 3})


def test_text_to_video_pipeline_rejects_image():
    with pytest.raises(ValueError, match="`image` must be None for the text-to-video"):
        optimize(tiny_wan_pipeline("t2v"), BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg())


def test_ti2v_checkpoint_loaded_as_users_load_it_takes_an_image(tmp_path):
    # Wan2.2-TI2V-5B-Diffusers: DiffusionPipeline.from_pretrained gives a WanPipeline (expand_timesteps=True)
    from diffusers import DiffusionPipeline

    from vlmteach_fast.baselines import best_of_n
    from vlmteach_fast.testing import tiny_wan_pipeline

    tiny_wan_pipeline("t2v", expand_timesteps=True).save_pretrained(tmp_path / "ti2v")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "ti2v")
    assert type(pipe).__name__ == "WanPipeline" and pipe.config.expand_timesteps
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg(max_steps=1))
    assert not res.history[0].skipped and res.frames.shape == (1, 5, 3, 32, 32)
    # the first frame is the conditioning image (the VAE round trip of it)
    assert (res.frames[0, 0] - first_frame()).abs().mean() < (res.frames[0, -1] - first_frame()).abs().mean()
    bon = best_of_n(pipe, BrightnessTeacher(), PROMPT, n=2, image=first_frame(), sampling=cfg().sampling,
                    lora=LoRASpec(rank=4))
    assert bon.frames.shape == (1, 5, 3, 32, 32)


def test_k_step_mode_runs(pipe):
    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(mode="k_step", steps=2, grad_steps=2, max_steps=2))
    # step 0: 2 gradient steps, checkpointed (2 recomputes, 2 backwards); step 1 is the last: no update
    assert len(res.history) == 2 and res.cost.denoiser_recompute == 2 and res.cost.denoiser_backward == 2


def test_public_entry_point_is_the_function_even_after_submodule_import():
    import vlmteach_fast
    import vlmteach_fast.optimization as mod
    from vlmteach_fast import optimize as public

    assert public is mod.optimize and vlmteach_fast.optimize is mod.optimize and callable(public)


class ScriptedTeacher(BrightnessTeacher):
    """BrightnessTeacher whose log P(yes) gets a constant ``offsets[call]`` (no gradient effect), and which keeps a
    snapshot of the pipeline's LoRA at every call: call 0 scores the plain sample, calls 1..S the steps, S+1 the
    final sample."""

    def __init__(self, pipe, offsets):
        super().__init__()
        self.pipe, self.offsets, self.snapshots = pipe, offsets, []

    def reward(self, frames, queries, **kwargs):
        from vlmteach_fast.instance import as_reasoner

        self.snapshots.append(as_reasoner(self.pipe).snapshot_lora())
        off = self.offsets[self.calls] if self.calls < len(self.offsets) else 0.0
        out = super().reward(frames, queries, **kwargs)
        out.log_probs = out.log_probs + off
        out.reward = out.reward + off
        return out


def test_best_adapter_is_the_one_whose_prediction_scored_highest():
    pipe = tiny_ti2v_pipeline()  # its own pipeline: the snapshots must not see other tests' reasoner state
    # step 1's prediction scores far above the others: its adapter (the one before step 1's update) must be kept,
    # not the last one
    teacher = ScriptedTeacher(pipe, offsets=[0.0, -5.0, 0.0, -5.0, -5.0, 0.0])
    res = optimize(pipe, teacher, PROMPT, image=first_frame(),
                   config=cfg(max_steps=4, keep_initial_if_better=False, yes_threshold=1.0))
    assert res.best_step == 1
    kept = teacher.snapshots[2]  # call 2 = step 1's prediction
    last = teacher.snapshots[4]  # call 4 = step 3's prediction
    assert any(not torch.equal(kept[k], last[k]) for k in kept)  # the test can tell the two apart
    for k, v in kept.items():
        assert torch.equal(res.adapter[k], v), k


def test_keep_initial_if_better_returns_the_plain_video():
    pipe = tiny_ti2v_pipeline()
    # every call after the plain sample scores 5 nats lower: the plain video must be returned, and the LoRA reset
    teacher = ScriptedTeacher(pipe, offsets=[0.0] + [-5.0] * 10)
    res = optimize(pipe, teacher, PROMPT, image=first_frame(), config=cfg(max_steps=3))
    assert res.used_initial and res.best_step == -1
    assert torch.equal(res.frames, res.initial_frames)
    assert all(float(v.abs().sum()) == 0 for k, v in res.adapter.items() if "lora_B" in k)
    # step 1's prediction scores 1 nat above the other steps (the brightness rewards of the steps differ by ~1e-4,
    # noise), so the kept adapter is a trained one, and without keep_initial_if_better its video is returned
    teacher = ScriptedTeacher(pipe, offsets=[0.0, -5.0, -4.0] + [-5.0] * 10)
    res = optimize(pipe, teacher, PROMPT, image=first_frame(), config=cfg(max_steps=3, keep_initial_if_better=False))
    assert res.best_step == 1
    assert not res.used_initial and not torch.equal(res.frames, res.initial_frames)


def test_judge_guard_stops_when_the_teacher_rises_while_the_judge_falls():
    pipe = tiny_ti2v_pipeline()
    # the teacher's reward climbs by 1 nat per step while the held-out judge's falls by 1: a gamed teacher
    teacher = ScriptedTeacher(pipe, offsets=[0.0, -9.0, -8.0, -7.0, -6.0, -5.0, -4.0])
    judge = ScriptedTeacher(pipe, offsets=[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])
    res = optimize(pipe, teacher, PROMPT, image=first_frame(), judge=judge,
                   config=cfg(max_steps=6, keep_initial_if_better=False, guard_patience=2, yes_threshold=1.0))
    assert res.stop_reason == "judge_diverged" and len(res.history) == 3  # steps 1 and 2 diverge from their last
    assert res.best_step == 0  # kept by the judge's score, not the teacher's (which is highest at step 2)
    assert all(h.judge_p_yes is not None for h in res.history)
    assert res.cost.reward_calls == 1 + 3 + 3 + 1  # plain sample, 3 teacher + 3 judge calls, final sample
    # without a judge the same teacher runs on and keeps its own best
    teacher = ScriptedTeacher(pipe, offsets=[0.0, -9.0, -8.0, -7.0, -6.0, -5.0, -4.0])
    res = optimize(pipe, teacher, PROMPT, image=first_frame(),
                   config=cfg(max_steps=6, keep_initial_if_better=False, yes_threshold=1.0))
    assert res.stop_reason == "max_steps" and res.best_step == 5


def test_all_yes_on_the_light_decode_is_confirmed_on_the_full_decode(pipe, tmp_path):
    from vlmteach_fast.testing import BrightnessTeacher as Bright

    class LightOnlyYes(Bright):
        """Says yes to anything when the frames are the light decode's (the test marks them), no on full decodes."""

        full = False

        def reward(self, frames, queries, **kw):
            out = super().reward(frames, queries, **kw)
            yes, self.full = (0.0 if self.full else 1.0), False
            out.log_probs = out.log_probs * 0 + torch.tensor(yes).clamp_min(1e-6).log()
            return out

    teacher = LightOnlyYes()
    r = Reasoner.from_pipeline(tiny_ti2v_pipeline(), LoRASpec(rank=4))
    decode = r.decode

    def full_decode(latents):  # the next reward call scores a full decode (the final sample's, or a confirmation)
        teacher.full = True
        return decode(latents)

    r.decode = full_decode
    c = cfg(max_steps=3, decoder=LightDecoderConfig(kind="linear", cache_dir=str(tmp_path)), score_initial=False)
    res = optimize(r, teacher, PROMPT, image=first_frame(), config=c)
    assert res.stop_reason == "max_steps"  # never stopped on the proxy's all-yes
    confirmed = [h for h in res.history if h.confirmed_p_yes is not None]  # every light-decode all-yes was checked
    assert confirmed and all(max(h.confirmed_p_yes) < 0.5 for h in confirmed)
    assert all(h.confirmed_p_yes is not None for h in res.history if min(h.p_yes) >= 0.9)
    res = optimize(r, teacher, PROMPT, image=first_frame(), config=dataclasses.replace(c, confirm_stop=False))
    assert res.stop_reason == "all_yes" and len(res.history) == 1


@pytest.mark.parametrize("anchor", ["anchor", "anchor_pixels"])
def test_anchor_adds_the_distance_to_the_plain_prediction_to_the_loss(pipe, anchor):
    """Latent (squared) and decoded-frame (L1) trust regions: nothing at step 0, a cost once the adapter moves."""
    import math

    def reward_loss(info):  # BrightnessTeacher: two questions, equal weights
        return -sum(math.log(p) for p in info.p_yes) / len(info.p_yes)

    res = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                   config=cfg(max_steps=3, keep_initial_if_better=False, yes_threshold=1.0, **{anchor: 1e6}))
    h = res.history
    assert h[0].loss == pytest.approx(reward_loss(h[0]), rel=1e-5)  # step 0 is the plain prediction: no distance
    assert h[2].loss > reward_loss(h[2]) + 1e-3  # later steps pay for moving away from it
    plain = optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                     config=cfg(max_steps=3, keep_initial_if_better=False, yes_threshold=1.0))
    assert plain.history[2].loss == pytest.approx(reward_loss(plain.history[2]), rel=1e-5)
    with pytest.raises(ValueError, match=anchor):
        cfg(**{anchor: -1.0})


@pytest.mark.parametrize("anchor", ["anchor", "anchor_pixels"])
def test_anchor_start_frees_the_first_steps_and_then_pulls_toward_the_plain_prediction(pipe, anchor):
    """With ``anchor_start=2`` steps 0-1 pay nothing however far they move; from step 2 on every step pays for its
    distance to step 0's (the plain model's) prediction, as with ``anchor_start=0``."""
    import math

    def reward_loss(info):
        return -sum(math.log(p) for p in info.p_yes) / len(info.p_yes)

    def run(start):
        return optimize(pipe, BrightnessTeacher(), PROMPT, image=first_frame(),
                        config=cfg(max_steps=4, keep_initial_if_better=False, yes_threshold=1.0, anchor_start=start,
                                   **{anchor: 1e6})).history

    late, early = run(2), run(0)
    assert [x.loss == pytest.approx(reward_loss(x), rel=1e-5) for x in late] == [True, True, False, False]
    assert early[1].loss > reward_loss(early[1]) + 1e-3  # the same step pays when the trust region counts from 0
    with pytest.raises(ValueError, match="anchor_start"):
        cfg(anchor_start=-1)
