"""Small typed checkers of one setting each, and the declaration by which a component checks its arguments.

Each checker returns the value (converted where it says so) or raises with the one message form of the
project, ``"<setting>: expected <what>, got <value>."``, so the user reads which setting is wrong and what
is allowed. Only ``ValueError`` and ``FileNotFoundError`` are raised, whatever the input.

A component declares the checks of its arguments once, with :func:`checks_arguments`; it runs them on every
call, and a recipe that passes a setting to that argument (``"temperature": "@temperature"``) runs the same
check on the setting, under the setting's name, before anything is built (:mod:`monai_ilm.recipe_checks`).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

__all__ = [
    "ARGUMENT_CHECKS",
    "ArgumentChecks",
    "Check",
    "JointCheck",
    "argument_checks",
    "check_bool",
    "check_choice",
    "check_existing_path",
    "check_int",
    "check_layers",
    "check_pool_sizes",
    "check_real",
    "check_weights",
    "check_writable_dir",
    "checks_arguments",
    "fail",
    "is_int",
    "is_real",
    "show",
]

_MAX_SHOWN = 80


def show(value: object) -> str:
    """``repr(value)``, shortened for the message."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def fail(key: str, expected: str, value: object) -> ValueError:
    """The error ``"<key>: expected <expected>, got <value>."`` (to raise)."""
    return ValueError(f"{key}: expected {expected}, got {show(value)}.")


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (``True`` and ``False`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a finite real number (not a boolean)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError):  # an integer too large for a float
        return False


def check_int(key: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an integer in ``[minimum, maximum]``.

    Raises:
        ValueError: naming ``key`` and the allowed range.
    """
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise fail(key, f"an integer of at least {minimum}{upper}", value)
    return int(value)


def check_real(
    key: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` if it is a finite real number in the interval from ``low`` to ``high``.

    Raises:
        ValueError: naming ``key`` and the interval.
    """
    ok = is_real(value)
    if ok:
        x = float(value)
        ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        if math.isinf(high):
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise fail(key, f"a finite number {interval}", value)
    return float(value)


def check_bool(key: str, value: object) -> bool:
    """``value`` if it is ``true`` or ``false`` (not 0, 1 or a string).

    Raises:
        ValueError: naming ``key``.
    """
    if not isinstance(value, bool):
        raise fail(key, "true or false", value)
    return value


def check_choice(key: str, value: object, allowed: Sequence) -> object:
    """``value`` if it is one of ``allowed`` (of the same kind: ``1`` is not ``True`` nor ``"1"``).

    Raises:
        ValueError: naming ``key`` and listing the allowed values.
    """

    def same(a: object) -> bool:
        same_kind = type(value) is type(a) or (is_int(value) and is_int(a))
        return same_kind and bool(value == a)

    try:
        known = any(same(a) for a in allowed)
    except Exception:  # noqa: BLE001 - an exotic __eq__ (arrays...)
        known = False
    if not known:
        raise fail(key, f"one of {list(allowed)}", value)
    return value


def as_list(key: str, value: object, what: str) -> list:
    """``value`` as a list when it is a sequence other than a string.

    Raises:
        ValueError: naming ``key`` and ``what`` the list should hold.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise fail(key, f"a list of {what}", value)
    return list(value)


def check_layers(key: str, value: object, allowed: Sequence[str]) -> list[str]:
    """A non-empty list of distinct names from ``allowed`` (e.g. the stage names ``layer1`` ... ``layer4``).

    Raises:
        ValueError: naming ``key`` and the allowed names.
    """
    layers = [value] if isinstance(value, str) else as_list(key, value, f"distinct names from {list(allowed)}")
    unknown = [layer for layer in layers if not (isinstance(layer, str) and layer in allowed)]
    if not layers or unknown or len(set(layers)) != len(layers):
        raise fail(key, f"a non-empty list of distinct names from {list(allowed)}", value)
    return layers


def check_weights(key: str, value: object, num_layers: int) -> list[float]:
    """One finite, non-negative weight, or a list of one per layer.

    Raises:
        ValueError: naming ``key``, the expected length and the allowed values.
    """
    if is_real(value):
        return [check_real(key, value, low=0.0)] * num_layers
    what = f"{num_layers} finite weights >= 0 (one per entry of layers) or a single one"
    weights = as_list(key, value, what)
    if len(weights) != num_layers or not all(is_real(w) and float(w) >= 0.0 for w in weights):
        raise fail(key, what, value)
    return [float(w) for w in weights]


def check_pool_sizes(key: str, value: object, num_layers: int) -> list[int | None]:
    """``"reference"``, one size or null, or a list with one positive size (or null: no pooling) per layer.

    Raises:
        ValueError: naming ``key``, the expected length and the allowed values.
    """
    if isinstance(value, str) and value == "reference":
        return ["reference"] * num_layers
    if value is None or is_int(value):
        value = [value] * num_layers
    what = f"'reference', or {num_layers} positive integers or nulls (one per entry of layers)"
    sizes = as_list(key, value, what)
    if len(sizes) != num_layers or not all(s is None or (is_int(s) and s >= 1) for s in sizes):
        raise fail(key, what, value)
    return sizes


def check_existing_path(key: str, value: object, expected: str = "an existing file or folder") -> Path:
    """``value`` as a path that exists.

    Raises:
        ValueError: when ``value`` is not a path.
        FileNotFoundError: naming ``key``, the path and what it should hold.
    """
    path = _as_path(key, value)
    if not _exists(key, path):
        raise FileNotFoundError(f"{key}: expected {expected}, got '{path}', which does not exist.")
    return path


def check_writable_dir(key: str, value: object) -> Path:
    """``value`` as a folder that exists and is writable, or can be created.

    Raises:
        ValueError: naming ``key`` when the path is a file, or neither it nor its nearest existing parent
            folder is writable.
    """
    path = _as_path(key, value)
    existing = path
    while not _exists(key, existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{key}: expected a folder for the run's outputs, got '{existing}', which is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{key}: expected a folder where the run can write, got '{existing}', which is not writable.")
    return path


def _exists(key: str, path: Path) -> bool:
    try:
        return path.exists()
    except OSError as error:  # a name too long, a folder that cannot be listed...
        shown = str(path) if len(str(path)) <= _MAX_SHOWN else str(path)[: _MAX_SHOWN - 3] + "..."
        raise ValueError(
            f"{key}: expected a path that can be checked, got '{shown}' ({error.strerror or error})."
        ) from None


def _as_path(key: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip() or "\0" in str(value):
        raise fail(key, "a path", value)
    try:
        return Path(value).expanduser().absolute()
    except (OSError, RuntimeError, ValueError) as error:  # e.g. '~unknown_user'
        raise fail(key, f"a path ({error})", value) from None


Check = Callable[[str, object], object]
"""A checker of one value: ``check(name, value)`` returns it or raises naming ``name``."""
JointCheck = Callable[[Mapping[str, object]], None]
"""A rule over several arguments of one component: ``check({argument: value})`` for those given."""
ARGUMENT_CHECKS = "argument_checks"
"""The attribute under which :func:`checks_arguments` declares a component's checks."""
Target = TypeVar("Target", bound=Callable)


class ArgumentChecks(NamedTuple):
    """The declared checks of a component: one per argument, and a rule over several (or None)."""

    single: Mapping[str, Check]
    joint: JointCheck | None = None


def argument_checks(target: object) -> ArgumentChecks | None:
    """The checks ``target`` declares with :func:`checks_arguments`, or None."""
    declared = getattr(target, ARGUMENT_CHECKS, None)
    return declared if isinstance(declared, ArgumentChecks) else None


def checks_arguments(joint: JointCheck | None = None, **checks: Check) -> Callable[[Target], Target]:
    """Declare the checks of a component's arguments, once, where the component is defined.

    The decorated function (or class, whose ``__init__`` is wrapped) checks each argument given in a call and
    not None (a default or None is not checked) with ``checks[argument](argument, value)``, then ``joint`` on
    ``{argument: value}`` of all those given, before its body runs; it declares them as
    ``target.argument_checks`` (:class:`ArgumentChecks`), so a recipe checks the setting it passes to the
    argument with the same rule and message before anything is built.

    Args:
        joint: a rule over several arguments, e.g. one weight per entry of ``layers``.
        checks: ``argument=check`` with ``check(name, value)`` one of this module's checkers (``functools.partial``
            for its options).

    Example::

        @checks_arguments(temperature=partial(check_real, low=0.0, low_open=True))
        class InfoNCELoss(nn.Module): ...

    Raises:
        TypeError: for a second declaration on one function (stacked, the outer would hide the inner's checks from
            a recipe): give all its checks in one.
    """

    def decorate(target: Target) -> Target:
        if not isinstance(target, type) and argument_checks(target) is not None:  # the outer would hide the inner
            raise TypeError(f"checks_arguments: expected one declaration per component, got a second on {target}.")
        function = target.__init__ if isinstance(target, type) else target
        signature = inspect.signature(function)
        instance = next(iter(signature.parameters)) if isinstance(target, type) else None  # ``self``

        @functools.wraps(function)
        def checked(*args: object, **kwargs: object) -> object:
            try:
                given = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:  # a wrong call: the function's own error says it best
                return function(*args, **kwargs)
            given = {name: value for name, value in given.items() if value is not None and name != instance}
            for name, check in checks.items():
                if name in given:
                    check(name, given[name])
            if joint is not None:
                joint(given)
            return function(*args, **kwargs)

        declared = ArgumentChecks(dict(checks), joint)
        if isinstance(target, type):
            target.__init__ = checked
            setattr(target, ARGUMENT_CHECKS, declared)
            return target
        setattr(checked, ARGUMENT_CHECKS, declared)
        return checked  # type: ignore[return-value]

    return decorate
