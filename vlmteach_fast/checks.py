"""Checks of user-given numbers, written once: every config and public function validates its integer and number
settings here, so the rule (bools are not ints, the bound, the message naming the argument) cannot drift.

Each raises ``ValueError("`name` must be ..., got value")`` naming the argument, the expected and the received value.
"""

from __future__ import annotations

import math

__all__ = ["check_int", "check_number"]


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None, *, optional: bool = False) -> None:
    """``value`` must be an int (not a bool) in ``[minimum, maximum]`` (``maximum`` None: no upper bound).

    ``optional``: None is accepted too.
    """
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an int {bound}{' or None' if optional else ''}, got {value!r}")


def check_number(name: str, value, minimum: float | None = None, *, positive: bool = False, finite: bool = False,
                 optional: bool = False) -> float:
    """``value`` must be an int or float (not a bool), ``>= minimum`` (if given), ``> 0`` (``positive``) and finite
    (``finite``); returns it as a float. ``optional``: None is accepted and returned.
    """
    if optional and value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and positive:
        ok = value > 0
    if ok and finite:
        ok = math.isfinite(value)
    if not ok:
        want = ["a number"] + ([f">= {minimum:g}"] if minimum is not None else []) + (["> 0"] if positive else [])
        want += ["finite"] if finite else []
        raise ValueError(f"`{name}` must be {' '.join(want[:1])}{' ' if len(want) > 1 else ''}"
                         f"{', '.join(want[1:])}{' or None' if optional else ''}, got {value!r}")
    return float(value)
