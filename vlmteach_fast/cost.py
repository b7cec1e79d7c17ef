"""The cost record every method reports, and the budget ``optimize`` can be capped at.

Costs are counted, not guessed: the reasoner counts denoiser evaluations and VAE decodes, the methods count light
decodes and reward calls, and wall time and peak memory are measured. ``denoiser_equiv`` folds forward and backward
evaluations into forward-equivalents: a backward pass through a denoiser evaluation costs about two forwards (two
matmuls per forward matmul: grad wrt input and, for the LoRA, wrt its weights), plus one forward more when the step was
checkpointed and is recomputed. ``bench/bench_optimize.py`` measures the actual ratio on the machine at hand.
"""

from __future__ import annotations

import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from .checks import check_int, check_number

__all__ = ["Budget", "CostRecord", "CostMeter", "parse_budget"]

BACKWARD_FORWARD_RATIO = 2.0  # forward-equivalents per backward evaluation (see module docstring)


@dataclass
class Budget:
    """A cap on what ``optimize`` may spend on one instance, final sample included. None = no cap on that axis.

    Attributes:
        seconds: wall-clock seconds.
        denoiser_evals: denoiser forward-equivalents (a backward counts ``BACKWARD_FORWARD_RATIO``, a recompute 1).
        best_of_n: set by ``parse_budget("best_of_n:N")``: the other two are filled in by measuring one Best-of-N
            candidate (sample + full decode + teacher score) on the same instance and multiplying by N.
    """

    seconds: float | None = None
    denoiser_evals: float | None = None
    best_of_n: int | None = None

    def __post_init__(self):
        for name in ("seconds", "denoiser_evals"):
            check_number(f"Budget.{name}", getattr(self, name), positive=True, finite=True, optional=True)
        check_int("Budget.best_of_n", self.best_of_n, optional=True)


def parse_budget(budget) -> Budget | None:
    """Accept None, a ``Budget``, a dict of its fields, or the string ``"best_of_n:N"``."""
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, dict):
        unknown = set(budget) - {"seconds", "denoiser_evals", "best_of_n"}
        if unknown:
            raise ValueError(f"`budget` has unknown keys {sorted(unknown)}; allowed: seconds, denoiser_evals, best_of_n")
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
    generate_calls: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = "none"
    extra: dict = field(default_factory=dict)

    @property
    def denoiser_equiv(self) -> float:
        """Forward-equivalents: forward + BACKWARD_FORWARD_RATIO * backward + recompute."""
        return self.denoiser_forward + BACKWARD_FORWARD_RATIO * self.denoiser_backward + self.denoiser_recompute

    def to_dict(self) -> dict:
        d = asdict(self)
        d["denoiser_equiv"] = self.denoiser_equiv
        return d


def _rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


class CostMeter:
    """Counts one run's cost. Use as ``meter = CostMeter(reasoner)`` ... ``record = meter.finish()``.

    Denoiser forward evaluations and full decodes are read from the reasoner's own counters (delta since start);
    everything else is added by the caller with ``meter.record.<field> += n``.
    """

    def __init__(self, reasoner, device: torch.device | None = None):
        self.reasoner = reasoner
        self.record = CostRecord()
        self.device = device if device is not None else reasoner.family.device
        self._evals0 = reasoner.counters.denoiser_evals
        self._decodes0 = reasoner.counters.vae_decodes
        self._t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def sync(self) -> CostRecord:
        """Bring the counters, time and memory up to date and return the record (the meter keeps running)."""
        r = self.record
        r.denoiser_forward = self.reasoner.counters.denoiser_evals - self._evals0
        r.full_decodes = self.reasoner.counters.vae_decodes - self._decodes0
        r.seconds = self.elapsed()
        if self.device.type == "cuda":
            r.peak_memory_bytes, r.memory_kind = int(torch.cuda.max_memory_allocated(self.device)), "cuda_allocated"
        else:
            r.peak_memory_bytes, r.memory_kind = _rss_peak_bytes(), "process_rss_peak"
        return r

    finish = sync
