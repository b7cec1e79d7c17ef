"""``optimize``: per-instance test-time LoRA optimization of a video model against a VLM teacher's reward.

Recipe (the method: docs/method.md):
1. set up the instance (``instance.setup_instance``): reasoner, queries, conditions encoded once, fixed noise;
2. optionally sample and score the fresh model once (the plain video; with ``budget="best_of_n:N"`` this also
   measures what one Best-of-N candidate costs on this instance);
3. loop: predict (one-step or k-step) -> light decode -> teacher reward -> loss = -sum_q w_q log P(Yes | q)
   -> backward -> AdamW step, keeping the best adapter, until a stopping rule fires;
4. restore the best adapter, sample with the final number of steps, full VAE decode, score it.

What is known to go wrong (docs/method.md) is designed for: ``RewardConfig(augment_views=8)`` on the VLM teacher averages
its score over perturbed copies of the frames (noise + 1-pixel shifts) so one adversarial pixel pattern fools it
less; ``mode="k_step"`` for models that are not step-distilled; the final video is scored again on the full decode and, with
``keep_initial_if_better``, the plain sample is returned when the optimized one scores lower.
"""

from __future__ import annotations

import logging
import math
import functools
import time
import warnings
import weakref
from dataclasses import dataclass, field

import torch

from .checks import check_bool, check_int, check_number
from .cost import Budget, CostMeter, UnitCosts, denoiser_cost, parse_budget
from .instance import InstanceSetup, SamplingConfig, score_frames, setup_instance
from .optim import LR_SCHEDULES, OPTIMIZERS, lr_factor, make_optimizer
from .plan.fit import check_run
from .plan.planner import check_size
from .optimize_result import STOP_REASONS, OptimizeResult, StepInfo
from .reasoner import LightDecoderConfig, LoRASpec

__all__ = ["OptimizeConfig", "OptimizeResult", "StepInfo", "STOP_REASONS", "optimize"]

log = logging.getLogger(__name__)



@dataclass
class OptimizeConfig:
    """Every knob of ``optimize``, with defaults that work for a step-distilled reasoner (the paper's setting)."""

    # prediction during optimization
    mode: str = field(default="one_step", metadata={"help": "'one_step' (distilled models) or 'k_step'"})
    steps: int = field(default=4, metadata={"help": "k_step: sampling steps T of each prediction"})
    grad_steps: int = field(default=1, metadata={"help": "k_step: last K of the T steps carry gradient"})
    lora_steps: int | None = field(default=None, metadata={
        "help": "k_step: the adapter acts on the last lora_steps of the T steps only (grad_steps <= it <= T); the "
                "frozen model's first T - lora_steps are run once per instance and reused by every step and the "
                "final sample (cheaper steps). None: all T"})
    checkpoint: bool | str | None = field(default=None, metadata={
        "help": "k_step: recompute the gradient steps in the backward instead of keeping their activations: True, "
                "'all_but_last', False, or None = True when grad_steps > 1 (False is faster when memory allows)"})
    block_checkpointing: bool = field(default=False, metadata={"help": "checkpoint transformer blocks too"})
    # LoRA and optimizer
    lora: LoRASpec = field(default_factory=LoRASpec, metadata={"help": "rank, alpha, targets of the fresh LoRA"})
    optimizer: str = field(default="adamw", metadata={
        "help": "'adamw' or 'nsgd' (normalized gradient descent: the gradient's direction with AdamW's first-step "
                "length, see vlmteach_fast/optim.py)"})
    lr: float = field(default=2e-3, metadata={"help": "learning rate (step length per parameter, for both)"})
    lr_schedule: str = field(default="constant", metadata={
        "help": "'constant', or 'linear' / 'cosine': lr decays to lr * lr_end over the planned updates"})
    lr_end: float = field(default=0.1, metadata={"help": "linear / cosine: the last update's lr factor"})
    lr_first: float = field(default=1.0, metadata={
        "help": "factor of the first update's lr (> 1: a larger first step)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (<= 0 disables)"})
    anchor: float = field(default=0.0, metadata={
        "help": "trust region: weight of the mean squared distance of the prediction's latents to the plain "
                "model's prediction (step 0's), added to the loss; 0 disables"})
    anchor_start: int = field(default=0, metadata={
        "help": "the trust regions (anchor, anchor_pixels) count from this step on (still around the plain model's "
                "prediction): the first steps move freely, later ones are pulled back. A long run drifts into videos "
                "that fool the teacher, a short one does not; 0: from the start"})
    anchor_pixels: float = field(default=0.0, metadata={
        "help": "keep what need not change: weight of the mean absolute change of the light-decoded frames from "
                "the plain model's (step 0's), added to the loss; an L1 term lets a few pixels (the moving "
                "objects) change and holds the rest (the static scene); 0 disables"})
    # reward
    decoder: LightDecoderConfig = field(default_factory=LightDecoderConfig, metadata={"help": "light decoder"})
    max_process: int = field(default=3, metadata={"help": "process questions the teacher may write"})
    # stopping
    max_steps: int = field(default=16, metadata={"help": "optimization steps at most (paper: ~16 on average)"})
    yes_threshold: float = field(default=0.9, metadata={"help": "stop when every query's P(Yes) reaches this"})
    patience: int = field(default=4, metadata={"help": "plateau: steps without improvement before stopping"})
    min_delta: float = field(default=1e-3, metadata={"help": "plateau: smallest loss decrease that counts"})
    budget: object = field(default=None, metadata={"help": "None, Budget(...), dict or 'best_of_n:N'"})
    guard_patience: int = field(default=2, metadata={
        "help": "with a judge: stop after this many steps in a row where the teacher's reward rises while the "
                "judge's falls (the teacher is being gamed)"})
    confirm_stop: bool = field(default=True, metadata={
        "help": "an all-yes stop judged on a light decode is confirmed on the full decode before it ends the run"})
    # robustness
    max_failures: int = field(default=3, metadata={"help": "non-finite steps in a row before 'diverged'"})
    lr_decay_on_failure: float = field(default=0.5, metadata={"help": "lr factor after a non-finite step"})
    # initial / final sample
    score_initial: bool = field(default=True, metadata={"help": "sample + score the fresh model first"})
    reuse_prediction: bool = field(default=True, metadata={
        "help": "k_step with steps == sampling.final_steps: the final video is the full decode of the kept step's "
                "prediction (the latents a final sample of that adapter computes) instead of a new sample"})
    keep_initial_if_better: bool = field(default=True, metadata={"help": "return the plain video if it scores higher"})
    score_final: bool = field(default=True, metadata={
        "help": "score the final video's full decode with the teacher (keep_initial_if_better with score_initial "
                "compares it); False: final_p_yes is the kept step's in-loop score and the finish is only the decode"})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "geometry, seed, final steps"})
    progress: bool = field(default=True, metadata={"help": "tqdm bar"})
    # memory check before the first model call (vlmteach_fast.plan.fit)
    memory_limit: object = field(default="auto", metadata={
        "help": "refuse a run whose accounted peak is over this, naming the settings that fit: 'auto' = the CUDA "
                "device's memory (no check on other devices, or with the teacher on another device), a size such "
                "as '80GiB' or bytes (any device), or None (no check)"})
    memory_headroom: object = field(default="2GiB", metadata={
        "help": "memory the check keeps free for the CUDA context, workspaces and fragmentation"})

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"OptimizeConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mode not in ("one_step", "k_step"):
            raise ValueError(f"OptimizeConfig.mode must be 'one_step' or 'k_step', got {self.mode!r}")
        for name in ("steps", "grad_steps", "max_steps", "patience", "max_failures", "guard_patience"):
            check_int(f"OptimizeConfig.{name}", getattr(self, name))
        check_int("OptimizeConfig.anchor_start", self.anchor_start, minimum=0)
        if self.mode == "k_step" and self.grad_steps > self.steps:
            raise ValueError(f"OptimizeConfig.grad_steps must be <= steps={self.steps}, got {self.grad_steps}")
        if self.lora_steps is not None:
            check_int("OptimizeConfig.lora_steps", self.lora_steps)
            if (self.mode != "k_step" or not self.grad_steps <= self.lora_steps <= self.steps
                    or not isinstance(self.sampling, SamplingConfig) or self.steps != self.sampling.final_steps):
                raise ValueError(f"OptimizeConfig.lora_steps must be None, or with mode='k_step' and steps == "
                                 f"sampling.final_steps between grad_steps={self.grad_steps} and steps={self.steps}, "
                                 f"got {self.lora_steps} (mode {self.mode!r})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"OptimizeConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("lr", "lr_decay_on_failure", "lr_end", "lr_first"):
            check_number(f"OptimizeConfig.{name}", getattr(self, name), positive=True, finite=True)
        if self.lr_decay_on_failure > 1:
            raise ValueError(f"`OptimizeConfig.lr_decay_on_failure` must be in (0, 1] (a factor that lowers lr), "
                             f"got {self.lr_decay_on_failure!r}")
        for name in ("weight_decay", "min_delta", "anchor", "anchor_pixels"):
            check_number(f"OptimizeConfig.{name}", getattr(self, name), minimum=0, finite=True)
        # any finite max_grad_norm is meaningful (<= 0 disables clipping); NaN would silently disable it
        check_number("OptimizeConfig.max_grad_norm", self.max_grad_norm, finite=True)
        if self.checkpoint not in (None, True, False, "all_but_last"):
            raise ValueError(f"OptimizeConfig.checkpoint must be None, True, False or 'all_but_last', "
                             f"got {self.checkpoint!r}")
        for name in ("block_checkpointing", "score_initial", "keep_initial_if_better", "progress", "reuse_prediction",
                     "score_final"):
            check_bool(f"OptimizeConfig.{name}", getattr(self, name))
        if not self.score_final and self.score_initial and self.keep_initial_if_better:
            raise ValueError("OptimizeConfig.score_final=False needs keep_initial_if_better=False or "
                             "score_initial=False: keeping the plain video compares it with the final video's score")
        if not 0.0 < self.yes_threshold <= 1.0:
            raise ValueError(f"OptimizeConfig.yes_threshold must be in (0, 1], got {self.yes_threshold!r}")
        for name, cls in (("lora", LoRASpec), ("decoder", LightDecoderConfig), ("sampling", SamplingConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"OptimizeConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        self.budget = parse_budget(self.budget)
        if self.memory_limit not in (None, "auto"):
            check_size("OptimizeConfig.memory_limit", self.memory_limit, "'auto', None or ", minimum=1)
        check_size("OptimizeConfig.memory_headroom", self.memory_headroom)


def _finite_grads(params) -> bool:
    return all(p.grad is None or torch.isfinite(p.grad).all() for p in params)


class _Stopper:
    """Plateau detection on the loss: stop after ``patience`` steps without a decrease of at least ``min_delta``."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad = math.inf, 0

    def update(self, loss: float) -> bool:
        if loss < self.best - self.min_delta:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def _resolve_budget(budget: Budget | None):
    """The caps the step loop checks as it runs: ``seconds`` and ``denoiser_evals``. ``best_of_n:N`` is kept as a
    planned step count before the loop starts (``UnitCosts.steps_within``)."""
    if budget is None or (budget.seconds is None and budget.denoiser_evals is None):
        return None
    return Budget(seconds=budget.seconds, denoiser_evals=budget.denoiser_evals)


# Unit costs measured in this process, per (reasoner, teacher, settings that change a unit's cost): measured once
# per run so every instance of a run gets the same step count (see cost.UnitCosts).
_UNIT_COSTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
UNIT_COST_REPEATS = 3  # fastest of 3: the first call of each unit pays one-off warm-up (measured 1.3-2x on the toy)


def _unit_cost_key(teacher, config: OptimizeConfig, judge=None) -> tuple:
    c, smp = config, config.sampling
    return (id(teacher), id(judge), c.mode, c.steps, c.grad_steps, c.lora_steps, c.checkpoint, c.block_checkpointing,
            repr(c.decoder), repr(c.lora), smp.num_frames, smp.height, smp.width, smp.final_steps, smp.guidance_scale)


def unit_costs(setup: InstanceSetup, teacher, config: OptimizeConfig, judge=None) -> UnitCosts:
    """Seconds of one Best-of-N candidate and one optimization step on this instance's models and settings: the
    fastest of ``UNIT_COST_REPEATS`` runs of each, measured once per process and settings (cached), with the LoRA
    restored afterwards. Used by ``best_of_n:N`` budgets without given ``unit_costs``. With a ``judge`` the steps
    are measured with it (its forward is part of every step)."""
    reasoner = setup.reasoner
    cache = _UNIT_COSTS.setdefault(reasoner, {})
    key = _unit_cost_key(teacher, config, judge)
    if key in cache:
        return cache[key]
    snapshot = reasoner.snapshot_lora()
    cand, step, evaluation, finish, prefix = [], [], [], [], []
    scratch = CostMeter(reasoner)
    loop = _StepLoop(setup, teacher, config, scratch, None, judge=judge)
    # its only step is a last one: no update
    last = _StepLoop(setup, teacher, config, scratch, None, max_steps=1, judge=judge)
    # The units are measured in turn within each round, so a slow stretch of the machine (another process, a
    # frequency change) falls on all of them rather than on one: their ratio decides the step count.
    for i in range(UNIT_COST_REPEATS):
        if config.lora_steps is not None and config.lora_steps < config.steps:
            t0 = time.perf_counter()
            reasoner.plain_prefix(setup.prepared, config.steps, config.lora_steps,
                                  guidance_scale=config.sampling.guidance_scale, refresh=True)
            prefix.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with reasoner.lora_bypassed():  # a candidate as Best-of-N samples it: no adapter on the pipeline
            frames = reasoner.sample(setup.prepared, steps=config.sampling.final_steps).frames
        score_frames(teacher, frames, setup.queries, scratch)
        cand.append(time.perf_counter() - t0)
        step.append(loop._step(i).seconds)
        evaluation.append(last._step(0).seconds)
        if _reuses_prediction(config):
            t0 = time.perf_counter()
            _finish_from_latents(reasoner, teacher, setup, last.best_latents, scratch, score=config.score_final)
            finish.append(time.perf_counter() - t0)
    reasoner.restore_lora(snapshot)
    cache[key] = UnitCosts(candidate=min(cand), step=min(step), evaluation=min(evaluation),
                           finish=min(finish) if finish else None, prefix=min(prefix) if prefix else None)
    return cache[key]


def _reuses_prediction(config: OptimizeConfig) -> bool:
    """Whether the loop's prediction is the final sample of its adapter: k-step over the final step count."""
    return config.reuse_prediction and config.mode == "k_step" and config.steps == config.sampling.final_steps


def _finish_from_latents(reasoner, teacher, setup: InstanceSetup, latents: torch.Tensor, meter: CostMeter,
                         score: bool = True):
    """(frames (1, F, 3, H, W) in [0, 1], P(yes) per query or None): the full decode of kept latents and its score."""
    with torch.no_grad():
        frames = reasoner.decode(latents)
    p_yes = score_frames(teacher, frames, setup.queries, meter)[1] if score else None
    return frames, p_yes


def optimize(pipe, teacher, prompt: str, image=None, queries=None, config: OptimizeConfig | None = None,
             callback=None, out_dir=None, judge=None) -> OptimizeResult:
    """Optimize a fresh per-instance LoRA so the video model's output satisfies the teacher's questions.

    Args:
        pipe: a diffusers video pipeline (see ``vlmteach_fast.reasoner.SUPPORTED_PIPELINES``) or a ``Reasoner``.
            A pipeline is wrapped once (LoRA injected, components frozen) and the wrapper is reused on later calls.
        teacher: a ``VLMTeacher`` or any ``Teacher`` (``synthesize_queries`` + differentiable ``reward``); it may
            live on another device than the pipeline (frames move with their gradient).
        prompt: the task prompt (non-empty str).
        image: first frame for image-to-video pipelines: PIL RGB image, (3, H, W) float tensor in [0, 1], or a path.
        queries: ``Queries``, a list of questions (first = goal), or None to let the teacher write them.
        config: ``OptimizeConfig``.
        callback: ``f(step_info: StepInfo)`` after every step; raising KeyboardInterrupt stops and returns the best.
        out_dir: when given, the result is saved there (``OptimizeResult.save``); checked before the first step
            (``loading.check_out_dir``: a file, an unwritable folder or one holding the user's files is refused).
        judge: optional held-out ``Teacher`` (another VLM, or the same one with other questions or views) that
            scores every step's frames without gradient. With a judge the kept adapter is the judge's best, each
            ``StepInfo`` records ``judge_p_yes``, and the run stops with ``"judge_diverged"`` after
            ``config.guard_patience`` steps in a row where the teacher's reward rises while the judge's falls.
            Costs one judge forward per step (counted in ``cost.reward_calls``).

    Returns:
        ``OptimizeResult`` (final frames (1, F, 3, H, W) float32 in [0, 1], adapter, history, stop reason, cost).
    """
    config = config or OptimizeConfig()
    if not isinstance(config, OptimizeConfig):
        raise TypeError(f"`config` must be an OptimizeConfig, got {type(config).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable or None, got {type(callback).__name__}")
    if judge is not None and not callable(getattr(judge, "reward", None)):
        raise TypeError(f"`judge` must be None or a Teacher with a reward() method, got {type(judge).__name__}")
    if out_dir is not None:  # before the first step: a bad folder must not cost the run
        from .loading import check_out_dir

        check_out_dir(out_dir, "`out_dir`", output_set=True)
    setup = setup_instance(pipe, teacher, prompt, image, queries, config.sampling, config.lora, config.max_process,
                           check=functools.partial(check_run, teacher=teacher, config=config,
                                                   max_process=config.max_process))
    reasoner = setup.reasoner
    reasoner.reset_lora()

    # 2. a best_of_n:N budget becomes a step count, from unit costs measured once per run (outside this record)
    candidate_evals = denoiser_cost(config.sampling.final_steps, config.sampling.guidance_scale).forward
    max_steps, units = config.max_steps, None
    if config.budget is not None and config.budget.best_of_n:
        units = config.budget.unit_costs or unit_costs(setup, teacher, config, judge)
        spent = int(config.score_initial)  # the plain sample, when it is scored
        max_steps = min(max_steps, units.steps_within(config.budget.best_of_n, spent))
    budget = _resolve_budget(config.budget)
    meter = CostMeter(reasoner)
    if queries is None:
        meter.count_generate()

    # 3. the plain sample and its score
    initial_frames = initial_p = sample_seconds = None
    if config.score_initial:
        with reasoner.lora_bypassed():
            initial_frames = reasoner.sample(setup.prepared, steps=config.sampling.final_steps).frames
        _, initial_p = score_frames(teacher, initial_frames, setup.queries, meter)
        sample_seconds = meter.elapsed()

    # 4. the optimization steps
    loop = _StepLoop(setup, teacher, config, meter, budget, candidate_evals, max_steps, sample_seconds,
                     judge).run(callback)

    # 5. the final video of the best adapter: its in-loop prediction decoded in full, or a new sample
    reasoner.restore_lora(loop.best_snapshot)
    best_step = loop.best_step
    score = config.score_final or best_step < 0  # without a kept step there is no in-loop score to report
    if _reuses_prediction(config) and loop.best_latents is not None:
        frames, final_p = _finish_from_latents(reasoner, teacher, setup, loop.best_latents, meter, score)
    else:
        frames = reasoner.sample(setup.prepared, steps=config.sampling.final_steps, lora_steps=config.lora_steps).frames
        final_p = score_frames(teacher, frames, setup.queries, meter)[1] if score else None
    if final_p is None:
        final_p = list(loop.history[best_step].p_yes)
    used_initial = False
    w = setup.queries.weight_tensor()
    if (config.keep_initial_if_better and initial_p is not None
            and _weighted_log(initial_p, w) > _weighted_log(final_p, w)):
        used_initial, frames, final_p, best_step = True, initial_frames, initial_p, -1
        reasoner.reset_lora()
    out = OptimizeResult(
        frames=frames, adapter={k: v.detach().cpu().clone() for k, v in reasoner.snapshot_lora().items()},
        queries=setup.queries, history=loop.history, stop_reason=loop.stop_reason, cost=meter.finish(),
        final_p_yes=final_p, initial_p_yes=initial_p, initial_frames=initial_frames, best_step=best_step,
        used_initial=used_initial, reasoner=reasoner, geometry=setup.geometry, lora_steps=config.lora_steps,
    )
    fidelity = reasoner.light_decoder(config.decoder).fidelity
    if fidelity is not None:  # PSNR against the full decode on this model's latents (docs/light_decoding.md)
        out.cost.extra["light_decoder"] = fidelity.to_dict()
    if units is not None:  # what best_of_n:N promised (seconds) and what the run was planned and seen to spend
        n = config.budget.best_of_n
        out.cost.extra.update(
            unit_costs=units.to_dict(), planned_steps=max_steps, budget_promise="seconds",
            budget_seconds=n * units.candidate, planned_seconds=units.planned_seconds(len(loop.history), spent),
            best_of_n_denoiser_equiv=n * candidate_evals)
    if out_dir is not None:
        out.save(out_dir)
    return out


def _weighted_log(p_yes: list[float], w: torch.Tensor) -> float:
    logs = torch.tensor(p_yes).clamp_min(1e-12).log()
    return float((logs * w / w.sum()).sum())


@dataclass
class LoopResult:
    """What the optimization steps leave: their history, why they stopped, the best adapter and its step (-1: the
    fresh adapter)."""

    history: list[StepInfo]
    stop_reason: str
    best_snapshot: dict
    best_step: int
    best_latents: torch.Tensor | None = None  # the kept step's prediction (None: the fresh adapter was kept)


class _StepLoop:
    """Step 3 of the recipe: predict -> light decode -> reward -> backward -> AdamW, keeping the best adapter,
    until a stopping rule fires. ``run`` returns a ``LoopResult``."""

    def __init__(self, setup: InstanceSetup, teacher, config: OptimizeConfig, meter: CostMeter, budget,
                 final_evals: float = 0.0, max_steps: int | None = None, final_seconds: float | None = None,
                 judge=None):
        self.setup, self.teacher, self.config, self.meter, self.budget = setup, teacher, config, meter, budget
        self.judge, self.previous, self.diverging = judge, None, 0  # previous: (teacher, judge) reward of the last step
        self.anchor_latents = None  # the plain model's prediction (step 0, fresh LoRA), for config.anchor
        self.anchor_frames = None  # its light decode, for config.anchor_pixels
        self.reasoner = setup.reasoner
        self.params = self.reasoner.lora_parameters()
        self.opt = make_optimizer(config.optimizer, self.params, config.lr, config.weight_decay)
        self.decoder = self.reasoner.light_decoder(config.decoder)
        self.stopper = _Stopper(config.patience, config.min_delta)
        self.k_step = config.mode == "k_step"
        # what one more step and the final sample will cost, for the budget check before each step
        self.step_equiv = self.reasoner.planned_cost(
            config.steps if self.k_step else 1, config.grad_steps if self.k_step else 1,
            config.sampling.guidance_scale, config.checkpoint if self.k_step else None, config.lora_steps).equiv
        self.final_equiv, self.final_seconds = final_evals, final_seconds
        self.max_steps = config.max_steps if max_steps is None else max_steps
        self.best_reward, self.best_step = -math.inf, -1
        self.best_snapshot = self.last_good = self.reasoner.snapshot_lora()
        self.best_latents = None
        self.failures, self.step_seconds = 0, None
        self.base_lr = config.lr  # lowered after a non-finite step; the schedule scales it per update

    def run(self, callback=None) -> LoopResult:
        from tqdm.auto import tqdm

        config, history = self.config, []
        stop_reason = "max_steps" if self.max_steps == config.max_steps else "budget"
        bar = tqdm(total=self.max_steps, desc="optimize", disable=not config.progress, leave=False)
        try:
            for step in range(self.max_steps):
                if self._over_budget():
                    stop_reason = "budget"
                    break
                info = self._step(step)
                history.append(info)
                bar.update(1)
                bar.set_postfix(loss=f"{info.loss:.3f}", p_yes="/".join(f"{p:.2f}" for p in info.p_yes))
                log.info("step %d loss %.4f p_yes %s", step, info.loss, info.p_yes)
                if callback is not None:
                    callback(info)
                reason = self._stop_reason(info)
                if reason is not None:
                    stop_reason = reason
                    break
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            warnings.warn("optimize: interrupted; finishing with the best adapter so far", RuntimeWarning,
                          stacklevel=3)
        except torch.OutOfMemoryError as err:
            raise RuntimeError(_oom_message(config)) from err
        finally:
            bar.close()
            self.opt.zero_grad(set_to_none=True)
        return LoopResult(history, stop_reason, self.best_snapshot, self.best_step, self.best_latents)

    def _step(self, step: int) -> StepInfo:
        config, meter, opt = self.config, self.meter, self.opt
        t0 = meter.elapsed()
        lr = self.base_lr * lr_factor(config.lr_schedule, step, self.max_steps - 1, config.lr_end, config.lr_first)
        for group in opt.param_groups:
            group["lr"] = lr
        # the last step's update would never be scored (the kept adapter is one the loop scored): it is skipped,
        # and its forward runs without autograd (no graph, no activations kept for a backward)
        update = step < self.max_steps - 1
        with torch.set_grad_enabled(update):
            pred, frames, loss, p_yes, reward_value = self._forward(step)
        judge_p, keep_value = None, reward_value
        if self.judge is not None and math.isfinite(reward_value):
            with torch.no_grad():
                jr = self.judge.reward(frames.detach(), self.setup.queries)
            self.meter.count_reward()
            judge_p, keep_value = jr.p_yes, float(jr.reward.mean())
            self._track_divergence(reward_value, keep_value)
        opt.zero_grad(set_to_none=True)
        ok = bool(torch.isfinite(loss))
        grad_norm = float("nan")
        if ok and update:
            loss.backward()
            meter.count_backward(pred.cost)
            ok = _finite_grads(self.params)
        if ok:
            if update and config.max_grad_norm > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm))
            if keep_value > self.best_reward:  # this reward belongs to the adapter *before* this update
                self.best_reward, self.best_step = keep_value, step
                self.best_snapshot, self.best_latents = self.reasoner.snapshot_lora(), self.latents
            if update:
                self.last_good = self.reasoner.snapshot_lora()
                opt.step()
            self.failures = 0
        else:
            self._recover(step)
        self.step_seconds = meter.elapsed() - t0
        return StepInfo(step=step, loss=float(loss.detach()), p_yes=p_yes, lr=lr, seconds=self.step_seconds,
                        grad_norm=grad_norm, skipped=not ok, best=ok and self.best_step == step, judge_p_yes=judge_p)

    def _forward(self, step: int):
        """(prediction, light-decoded frames, loss, P(yes) per query, mean reward) of the current adapter; the loss
        adds the trust-region terms. A non-finite decode gives a NaN loss and reward."""
        config = self.config
        pred = self.reasoner.predict(self.setup.prepared, mode=config.mode,
                                     steps=config.steps if self.k_step else None,
                                     grad_steps=config.grad_steps if self.k_step else 1, lora_steps=config.lora_steps,
                                     checkpoint=config.checkpoint if self.k_step else None,
                                     block_checkpointing=config.block_checkpointing)
        if step == 0:  # how faithful the light decoder is on this model's latents: measured once per decoder
            self.decoder.check_fidelity(pred.latents)
        frames = self.decoder(pred.latents)  # (1, F_sel, 3, H, W)
        self.latents = pred.latents.detach()  # for confirming an all-yes stop on the full decode
        self.meter.count_light_decode()
        if not bool(torch.isfinite(frames.detach()).all()):  # like a NaN loss (a teacher would reject the frames)
            nan = float("nan")
            return pred, frames, torch.tensor(nan), [nan] * len(self.setup.queries.questions), nan
        rew = self.teacher.reward(frames, self.setup.queries)
        self.meter.count_reward()
        loss = -rew.reward.mean()
        counts = step >= config.anchor_start  # the references are kept from step 0 on either way
        if config.anchor > 0:
            if self.anchor_latents is None:
                self.anchor_latents = pred.latents.detach()
            if counts:
                loss = loss + config.anchor * (pred.latents.float() - self.anchor_latents.float()).square().mean()
        if config.anchor_pixels > 0:
            if self.anchor_frames is None:
                self.anchor_frames = frames.detach()
            if counts:
                loss = loss + config.anchor_pixels * (frames.float() - self.anchor_frames.float()).abs().mean()
        return pred, frames, loss, rew.p_yes, float(rew.reward.detach().mean())

    def _track_divergence(self, teacher_value: float, judge_value: float) -> None:
        """Count steps in a row where the teacher's reward rose and the judge's fell (against the last step)."""
        if self.previous is not None:
            rising, falling = teacher_value > self.previous[0], judge_value < self.previous[1]
            self.diverging = self.diverging + 1 if (rising and falling) else 0
        self.previous = (teacher_value, judge_value)

    def _confirmed(self, info: StepInfo) -> bool:
        """An all-yes judged on a light decode, checked on the full decode of the same prediction (cost counted)."""
        if not self.config.confirm_stop or self.config.decoder.kind == "full":
            return True
        with torch.no_grad():
            frames = self.reasoner.decode(self.latents)
            _, p_yes = score_frames(self.teacher, frames, self.setup.queries, self.meter)
        info.confirmed_p_yes = p_yes
        return all(p >= self.config.yes_threshold for p in p_yes)

    def _recover(self, step: int) -> None:
        """A non-finite loss or gradient: back to the last good adapter, lower learning rate."""
        self.failures += 1
        self.opt.zero_grad(set_to_none=True)
        self.reasoner.restore_lora(self.last_good)
        self.base_lr *= self.config.lr_decay_on_failure
        warnings.warn(f"optimize: non-finite loss or gradient at step {step}; restored the last good adapter "
                      f"and lowered lr to {self.base_lr:.3g} "
                      f"({self.failures}/{self.config.max_failures})", RuntimeWarning, stacklevel=4)

    def _stop_reason(self, info: StepInfo) -> str | None:
        if self.failures >= self.config.max_failures:
            return "diverged"
        if self.judge is not None and self.diverging >= self.config.guard_patience:
            return "judge_diverged"
        if not info.skipped and all(p >= self.config.yes_threshold for p in info.p_yes) and self._confirmed(info):
            return "all_yes"
        if not info.skipped and self.stopper.update(info.loss):
            return "plateau"
        return None

    def _over_budget(self) -> bool:
        """True when one more step plus the final sample would exceed the budget (a ``seconds`` budget estimates
        the step from the last one and the final sample from the plain sample, or from a step without one)."""
        budget = self.budget
        if budget is None:
            return False
        rec = self.meter.sync()
        if (budget.denoiser_evals is not None
                and rec.denoiser_equiv + self.step_equiv + self.final_equiv > budget.denoiser_evals):
            return True
        if budget.seconds is not None:
            step = self.step_seconds or 0.0
            final = self.final_seconds if self.final_seconds is not None else step
            if rec.seconds + step + final > budget.seconds:
                return True
        return False


def _oom_message(config: OptimizeConfig) -> str:
    hints = []
    if config.mode == "k_step":
        hints.append(f"lower grad_steps (now {config.grad_steps}) or steps (now {config.steps})")
    if not config.block_checkpointing:
        hints.append("set block_checkpointing=True")
    hints.append("lower the teacher's RewardConfig.augment_views / process_frames if set")
    hints.append(f"decode fewer frames (decoder.frames, now {config.decoder.frames!r})")
    hints.append("lower num_frames / height / width in sampling, or the LoRA rank")
    return "out of memory during optimization: " + "; ".join(hints)
