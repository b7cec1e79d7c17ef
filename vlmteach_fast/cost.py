"""The cost model, written once: what a denoising step, a backward pass and a method run cost, and the budget
``optimize`` can be capped at.

Costs are counted, not guessed: the reasoner counts denoiser evaluations and VAE decodes and reports each
prediction's ``DenoiserCost``; the methods tell the ``CostMeter`` what else they did (reward calls, light decodes,
backward passes, text generations); wall time and peak memory are measured.

The rules (see docs/architecture.md, "Cost accounting"):
- a denoising step is one transformer evaluation, two when classifier-free guidance is on (cond + uncond batched);
- a backward pass through an evaluation costs ``BACKWARD_FORWARD_RATIO`` = 2 forwards (two matmuls per forward
  matmul: grad wrt input and, for the LoRA, wrt its weights), plus one forward more when the step was checkpointed
  and is recomputed. ``bench/bench_optimize.py`` measures the actual ratio on the machine at hand.
"""

from __future__ import annotations

import ctypes
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from .checks import check_int, check_number

__all__ = ["Budget", "CostRecord", "CostMeter", "DenoiserCost", "UnitCosts", "denoiser_cost", "evals_per_step",
           "keep_freed_memory", "parse_budget", "BACKWARD_FORWARD_RATIO"]

BACKWARD_FORWARD_RATIO = 2.0  # forward-equivalents per backward evaluation (see module docstring)


def evals_per_step(guidance_scale: float) -> int:
    """Transformer evaluations of one denoising step: 2 with classifier-free guidance (scale > 1), else 1."""
    return 2 if guidance_scale > 1.0 else 1


@dataclass(frozen=True)
class DenoiserCost:
    """Denoiser evaluations of one prediction or sample: ``forward`` run (with or without gradient), ``backward``
    the gradient flows back through, ``recompute`` checkpointed evaluations run again during the backward pass."""

    forward: int = 0
    backward: int = 0
    recompute: int = 0

    @property
    def equiv(self) -> float:
        """Forward-equivalents: forward + BACKWARD_FORWARD_RATIO * backward + recompute."""
        return self.forward + BACKWARD_FORWARD_RATIO * self.backward + self.recompute


def denoiser_cost(steps: int, guidance_scale: float, grad_steps: int = 0, checkpointed_steps: int = 0) -> DenoiserCost:
    """Cost of ``steps`` denoising steps of which the last ``grad_steps`` carry gradient and ``checkpointed_steps``
    of those are checkpointed (recomputed in backward)."""
    per = evals_per_step(guidance_scale)
    return DenoiserCost(forward=steps * per, backward=grad_steps * per, recompute=checkpointed_steps * per)


@dataclass
class UnitCosts:
    """Seconds of the two units a ``best_of_n:N`` budget is made of, measured once per run (or given).

    A budget that compares seconds as they run makes the step count depend on how loaded the machine is at that
    moment (same seeds, different videos). Instead ``optimize`` measures these two units once per run (the fastest
    of a few repetitions, the least disturbed by other load), derives the step count from them with
    :meth:`steps_within`, records them in the result, and reports the seconds it really spent beside them. Passing
    the recorded units back (``Budget(best_of_n=N, unit_costs=...)``) reproduces the run exactly.

    Attributes:
        candidate: one Best-of-N candidate: a ``final_steps`` sample (the adapter layers bypassed, as on a pipeline
            without one), its full decode and the teacher's score.
        step: one optimization step: prediction, light decode, reward, backward and the optimizer update.
        evaluation: the last step, which skips its update (prediction, light decode, reward); None: ``step``.
        finish: producing the final video: a full decode of the kept prediction and its score when the loop's
            prediction is the final sample (k-step over the final step count); None: a new sample (``candidate``).
        prefix: the frozen model's sampling steps before the adapter's (``OptimizeConfig.lora_steps``), run once
            per run and reused by every step; None: none.
    """

    candidate: float
    step: float
    evaluation: float | None = None
    finish: float | None = None
    prefix: float | None = None

    def __post_init__(self):
        for name in ("candidate", "step", "evaluation", "finish", "prefix"):
            check_number(f"UnitCosts.{name}", getattr(self, name), positive=True, finite=True,
                         optional=name in ("evaluation", "finish", "prefix"))

    def planned_seconds(self, steps: int, candidates_spent: int) -> float:
        """Seconds a run of ``steps`` optimization steps is planned to take: ``candidates_spent`` candidates (the
        plain sample, if scored), the plain prefix, the steps (every step but the last costs ``step``, the last
        ``evaluation``) and the finish."""
        last = self.step if self.evaluation is None else self.evaluation
        run = 0.0 if steps == 0 else (steps - 1) * self.step + last
        finish = self.candidate if self.finish is None else self.finish
        return candidates_spent * self.candidate + (self.prefix or 0.0) + run + finish

    def steps_within(self, n: int, candidates_spent: int) -> int:
        """The most optimization steps whose ``planned_seconds`` fit in ``n`` candidates' time."""
        budget = n * self.candidate
        if self.planned_seconds(1, candidates_spent) > budget + 1e-9:  # 1e-9: exact fits survive float rounding
            return 0
        last = self.step if self.evaluation is None else self.evaluation
        left = budget - self.planned_seconds(0, candidates_spent) - last
        return 1 + int(left / self.step + 1e-9)

    def to_dict(self) -> dict:
        """The measured fields (unset optional ones left out); ``UnitCosts(**d)`` rebuilds it."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Budget:
    """A cap on what ``optimize`` may spend on one instance, final sample included. None = no cap on that axis;
    caps given together all hold.

    Attributes:
        seconds: wall-clock seconds, checked before each step against the last step's measured time.
        denoiser_evals: denoiser forward-equivalents (a backward counts ``BACKWARD_FORWARD_RATIO``, a recompute 1).
        best_of_n: set by ``parse_budget("best_of_n:N")``. The promise is time: the run (plain sample and score,
            steps, finish) is planned to take no longer than N Best-of-N candidates, from ``unit_costs``
            (``UnitCosts.steps_within``). Denoiser forward-equivalents are recorded, not capped: a step does more
            denoiser work than a candidate's share of its time, and the teacher, not the denoiser, is most of a
            step's cost. Add ``denoiser_evals`` to cap them too.
        unit_costs: ``UnitCosts`` (or a dict of its fields) for ``best_of_n``; None measures them once per run.
    """

    seconds: float | None = None
    denoiser_evals: float | None = None
    best_of_n: int | None = None
    unit_costs: UnitCosts | None = None

    def __post_init__(self):
        for name in ("seconds", "denoiser_evals"):
            check_number(f"Budget.{name}", getattr(self, name), positive=True, finite=True, optional=True)
        check_int("Budget.best_of_n", self.best_of_n, optional=True)
        if isinstance(self.unit_costs, dict):
            self.unit_costs = UnitCosts(**self.unit_costs)
        if self.unit_costs is not None and not isinstance(self.unit_costs, UnitCosts):
            raise TypeError(f"Budget.unit_costs must be a UnitCosts, a dict of its fields or None, got "
                            f"{type(self.unit_costs).__name__}")


def parse_budget(budget) -> Budget | None:
    """Accept None, a ``Budget``, a dict of its fields, or the string ``"best_of_n:N"``."""
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, dict):
        unknown = set(budget) - {"seconds", "denoiser_evals", "best_of_n", "unit_costs"}
        if unknown:
            raise ValueError(f"`budget` has unknown keys {sorted(unknown)}; allowed: seconds, denoiser_evals, "
                             "best_of_n, unit_costs")
        return Budget(**budget)
    if isinstance(budget, str):
        m = re.fullmatch(r"\s*best_of_n\s*:\s*(\d+)\s*", budget)
        if m is None or int(m.group(1)) < 1:
            raise ValueError(f"`budget` string must look like 'best_of_n:5' (N >= 1), got {budget!r}")
        return Budget(best_of_n=int(m.group(1)))
    raise TypeError(f"`budget` must be None, a Budget, a dict or 'best_of_n:N', got {type(budget).__name__}")


@dataclass
class CostRecord:
    """What one method spent on one instance (the same record for optimize, best_of_n, vlm_as_solver, baseline).

    Attributes:
        denoiser_forward: denoiser evaluations run forward (with or without gradient; guided steps count 2).
        denoiser_backward: evaluations a gradient flowed back through.
        denoiser_recompute: checkpointed evaluations recomputed during backward.
        light_decodes / full_decodes: light decoder and full VAE decode calls.
        reward_calls / reward_backward: teacher reward forward calls and backward passes through them.
        judge_reward_calls: reward calls of a separate judge model that picks Best-of-N's candidates.
        generate_calls: teacher text generations (query synthesis, plans).
        seconds: wall time. peak_memory_bytes: CUDA peak allocated on the reasoner's device, or the process's peak
            resident set size on CPU (``ru_maxrss``, a process-wide high-water mark); ``memory_kind`` says which.
    """

    denoiser_forward: int = 0
    denoiser_backward: int = 0
    denoiser_recompute: int = 0
    light_decodes: int = 0
    full_decodes: int = 0
    reward_calls: int = 0
    reward_backward: int = 0
    judge_reward_calls: int = 0
    generate_calls: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = "none"
    extra: dict = field(default_factory=dict)

    @property
    def denoiser_equiv(self) -> float:
        """Forward-equivalents of all denoiser work (``DenoiserCost.equiv``)."""
        return DenoiserCost(self.denoiser_forward, self.denoiser_backward, self.denoiser_recompute).equiv

    def to_dict(self) -> dict:
        d = asdict(self)
        d["denoiser_equiv"] = self.denoiser_equiv
        return d


def _rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


class CostMeter:
    """Counts one run's cost. Use as ``meter = CostMeter(reasoner)`` ... ``record = meter.finish()``.

    Denoiser forward evaluations and full decodes are read from the reasoner's ``usage()`` (delta since start); the
    method reports the rest with ``count_*`` (the only writers of the record's counters). ``reasoner`` None: a method
    that runs no video model (``sanity.py``): its denoiser and decode counts stay 0.
    """

    def __init__(self, reasoner, device: torch.device | None = None):
        self.reasoner = reasoner
        self.record = CostRecord()
        if device is None:
            device = torch.device("cpu") if reasoner is None else reasoner.device
        self.device = device
        self._start = None if reasoner is None else reasoner.usage()
        self._t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def count_generate(self, n: int = 1) -> None:
        """``n`` teacher text generations (queries, plans)."""
        self.record.generate_calls += n

    def count_reward(self) -> None:
        """One teacher reward call (forward)."""
        self.record.reward_calls += 1

    def count_judge_reward(self) -> None:
        """One reward call of a separate judge model (Best-of-N's picker when it is not the teacher)."""
        self.record.judge_reward_calls += 1

    def count_light_decode(self) -> None:
        """One light-decoder call."""
        self.record.light_decodes += 1

    def count_backward(self, cost: DenoiserCost) -> None:
        """One backward pass from the reward through the light decoder into the denoiser evaluations of a prediction
        whose cost the reasoner reported (``PredictOutput.cost``)."""
        self.record.reward_backward += 1
        self.record.denoiser_backward += cost.backward
        self.record.denoiser_recompute += cost.recompute

    def sync(self) -> CostRecord:
        """Bring the counters, time and memory up to date and return the record (the meter keeps running)."""
        r = self.record
        if self.reasoner is not None:
            now = self.reasoner.usage()
            r.denoiser_forward = now.denoiser_evals - self._start.denoiser_evals
            r.full_decodes = now.vae_decodes - self._start.vae_decodes
        r.seconds = self.elapsed()
        if self.device.type == "cuda":
            r.peak_memory_bytes, r.memory_kind = int(torch.cuda.max_memory_allocated(self.device)), "cuda_allocated"
        else:
            r.peak_memory_bytes, r.memory_kind = _rss_peak_bytes(), "process_rss_peak"
        return r

    finish = sync


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed CPU buffers up to ``mmap_threshold`` bytes in the process heap (glibc ``mallopt``) instead of
    returning them to the OS after each use. Every full VAE decode of the tiny toy models otherwise maps and
    page-faults its buffers in again: measured on the dev CPU, a toy decode took 36-41 ms (fastest of 15; medians
    39-55) in four processes, 34-37 ms (medians 35-38) with this, and the Best-of-N candidate unit a ``best_of_n``
    budget is planned from varies less between processes. Process-wide; the heap keeps up to ``trim_threshold``
    bytes of freed memory. Returns False (changing nothing) where the C library has no ``mallopt``."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
    return mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
