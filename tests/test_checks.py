"""The shared number checks: bools are not ints, bounds are inclusive, the message names argument, bound and value."""

import math

import pytest

from vlmteach_fast.checks import check_int, check_number


@pytest.mark.parametrize("value", [1, 5, 10])
def test_check_int_accepts_in_range(value):
    check_int("k", value, 1, 10)


@pytest.mark.parametrize("value", [0, 11, True, 2.0, "3", None])
def test_check_int_rejects_with_a_message_naming_argument_bound_and_value(value):
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 10\], got " + repr(value).replace("(", r"\(")):
        check_int("k", value, 1, 10)


def test_check_int_default_minimum_is_one_and_optional_takes_none():
    check_int("n", None, optional=True)
    with pytest.raises(ValueError, match="`n` must be an int >= 1 or None, got 0"):
        check_int("n", 0, optional=True)
    check_int("seed", 0, minimum=0)
    with pytest.raises(ValueError, match="`seed` must be an int >= 0, got -1"):
        check_int("seed", -1, minimum=0)


def test_check_number():
    assert check_number("lr", 3) == 3.0 and isinstance(check_number("lr", 3), float)
    assert check_number("b", None, optional=True) is None
    for bad in (0, -1.0, math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match="`lr` must be a number > 0, finite, got"):
            check_number("lr", bad, positive=True, finite=True)
    with pytest.raises(ValueError, match="`g` must be a number >= 1, got 0.5"):
        check_number("g", 0.5, minimum=1.0)
