"""Argument checks a component declares (monai_ilm.checks.checks_arguments): run on each call, read by a recipe."""

from __future__ import annotations

from functools import partial

import pytest

from monai_ilm.checks import argument_checks, check_choice, check_int, check_real, checks_arguments, fail


def _sizes_fit(given):
    if "low" in given and "high" in given and given["low"] > given["high"]:
        raise fail("high", f"at least low ({given['low']})", given["high"])


@checks_arguments(_sizes_fit, low=check_int, high=check_int, mode=partial(check_choice, allowed=("a", "b")))
def make_range(low: int = 1, high: int = 10, mode: str | None = "a") -> tuple[int, int, str | None]:
    return low, high, mode


@checks_arguments(rate=partial(check_real, low=0.0, high=1.0))
class Decay:
    def __init__(self, rate: float = 0.5, name: str = "decay") -> None:
        self.rate, self.name = rate, name


def test_a_declared_check_runs_on_each_call_naming_the_argument():
    assert make_range(2, high=3) == (2, 3, "a")
    with pytest.raises(ValueError, match=r"^low: expected an integer of at least 1, got 0\.$"):
        make_range(0)
    with pytest.raises(ValueError, match=r"^mode: expected one of \['a', 'b'\], got 'c'\.$"):
        make_range(mode="c")
    with pytest.raises(ValueError, match=r"^high: expected at least low \(5\), got 4\.$"):
        make_range(5, 4)
    assert make_range(mode=None) == (1, 10, None)  # None is "not given", as a recipe's null


def test_a_class_checks_its_constructor_arguments_and_keeps_its_identity():
    assert Decay(0.25).rate == 0.25 and Decay.__name__ == "Decay"
    with pytest.raises(ValueError, match=r"^rate: expected a finite number in \[0, 1\], got 1\.5\.$"):
        Decay(rate=1.5)
    with pytest.raises(TypeError):  # a wrong call keeps Python's own error
        Decay(0.5, "x", "extra")


def test_the_declaration_is_readable_and_checks_under_another_name():
    declared = argument_checks(make_range)
    assert set(declared.single) == {"low", "high", "mode"} and declared.joint is _sizes_fit
    with pytest.raises(ValueError, match=r"^decay_rate: expected a finite number in \[0, 1\], got -1\.$"):
        argument_checks(Decay).single["rate"]("decay_rate", -1)
    assert argument_checks(len) is None


def test_a_second_declaration_is_refused():
    """Stacked, the outer declaration would hide the inner one from a recipe: one declaration per component."""
    with pytest.raises(TypeError, match=r"^checks_arguments: expected one declaration per component"):
        checks_arguments(high=partial(check_int, maximum=100))(make_range)
