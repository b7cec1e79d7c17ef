"""Plan a run before it starts: memory, FLOPs and time of one ``optimize`` step and one Best-of-N candidate at real
model shapes, accounted on a CPU (``account_run``), turned into seconds by a roofline fitted to measured GPU phases
(``roofline``), and the settings that fit a device (``plan``, ``vlmteach-fast plan``). See docs/planning.md."""

from .account import account_run
from .shadow import PhaseAccount, ShapeOnlyRun

__all__ = ["PhaseAccount", "ShapeOnlyRun", "account_run"]
