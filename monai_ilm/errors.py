"""How a failed run ends: a few lines naming the root cause and the file or setting, the traceback in a file.

A failure inside a bundle reaches the user wrapped several times: MONAI re-raises it as
``RuntimeError: Failed to instantiate component ...`` or ``Failed to evaluate ConfigExpression``, a
transform failure as ``applying transform ...``, and a DataLoader worker's as a copy whose message is
the worker's whole traceback; Python then prints some sixty lines with the cause in the middle.
:func:`install_excepthook` makes an uncaught exception print two lines instead::

    monai-ilm: the run failed; full traceback in /tmp/monai-ilm-traceback-1a2b3c.txt (MONAI_ILM_TRACEBACK=1 prints it)
    monai-ilm: UnreadableImageError: image file '/data/dr/train/10_left.jpeg' cannot be read (...)

the last naming the innermost monai-ilm exception of the chain (raised by monai-ilm code or of a monai-ilm
class), or the innermost exception when none is. With ``MONAI_ILM_TRACEBACK=1`` (or where the file cannot be
written) Python's traceback is printed as before, followed by the same closing line. Bundles install it first
thing in ``initialize`` (``"$monai_ilm.errors.install_excepthook()"``) and so does ``python -m monai_ilm``.

It also shows MONAI's config-trust warning (GHSA-873f-pvrv-4x83), which MONAI gives every time a bundle's
configs are parsed, once per process (:func:`show_trust_warning_once`): the runner parses them for every cell.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import traceback as tracebacks
import warnings
from types import TracebackType

__all__ = [
    "PREFIX",
    "TRACEBACK_ENV",
    "TRUST_ADVISORY",
    "install_excepthook",
    "root_cause",
    "show_trust_warning_once",
    "summary",
]

PREFIX = "monai-ilm"
TRACEBACK_ENV = "MONAI_ILM_TRACEBACK"  # set (not 0/false/no): print the full traceback on stderr
TRUST_ADVISORY = "GHSA-873f-pvrv-4x83"  # named by MONAI's warning each time a bundle's configs are parsed
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MAX_CHARS = 2000
# how torch re-raises a DataLoader worker's exception in the main process
_WORKER_MESSAGE = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback", re.DOTALL)
_CHAIN_SEPARATOR = re.compile(
    r"^(?:The above exception was the direct cause of the following exception:"
    r"|During handling of the above exception, another exception occurred:)$",
    re.MULTILINE,
)
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+')


def _in_package(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, outermost first, as Python prints them."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _is_ours(error: BaseException) -> bool:
    """Raised by monai-ilm code (its innermost frame is in the package) or of a monai-ilm class."""
    if type(error).__module__.split(".")[0] == "monai_ilm":
        return True
    frame: TracebackType | None = error.__traceback__
    last = None
    while frame is not None:
        last, frame = frame, frame.tb_next
    return last is not None and _in_package(last.tb_frame.f_code.co_filename)


def root_cause(error: BaseException) -> BaseException:
    """The innermost monai-ilm exception of ``error``'s chain, or the innermost exception when none is."""
    chain = _chain(error)
    return next((e for e in reversed(chain) if _is_ours(e)), chain[-1])


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."


def _worker_cause(message: str) -> str | None:
    """``Type: message`` of the innermost monai-ilm exception in a DataLoader worker's traceback text."""
    if not _WORKER_MESSAGE.match(message):
        return None
    text = message.split("Original Traceback (most recent call last):", 1)[1]
    blocks = []  # (raising file, "Type: message", qualified type), innermost first as Python prints them
    for block in _CHAIN_SEPARATOR.split(text):
        lines = [line for line in block.splitlines() if line.strip()]
        frames = [i for i, line in enumerate(lines) if _FRAME.match(line)]
        if not frames:
            continue
        # after the innermost frame: its indented source lines, then the unindented "Type: message" lines
        tail = lines[frames[-1] + 1 :]
        start = next((i for i, line in enumerate(tail) if not line[:1].isspace()), None)
        if start is None:
            continue
        kind_and_message = " ".join(tail[start:])
        kind, _, detail = kind_and_message.partition(":")
        blocks.append((_FRAME.match(lines[frames[-1]]).group(1), kind.split(".")[-1] + ":" + detail, kind))
    if not blocks:
        return None
    ours = [b for b in blocks if _in_package(b[0]) or b[2].startswith("monai_ilm.")]
    return (ours or [blocks[0]])[0][1]


def summary(error: BaseException) -> str:
    """The closing line for ``error``: ``"monai-ilm: <Type>: <message>"`` of its root cause, on one line.

    Args:
        error: the exception that ended the run.

    Returns:
        One line, naming the innermost monai-ilm exception (see :func:`root_cause`); for an exception
        copied from a DataLoader worker, the innermost monai-ilm exception of the worker's traceback.
    """
    cause = root_cause(error)
    text = str(cause)
    worker = _worker_cause(text)
    if worker is not None:
        return f"{PREFIX}: {_one_line(worker)}"
    return f"{PREFIX}: {type(cause).__name__}" + (f": {_one_line(text)}" if text.strip() else "")


def _full_traceback_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _write_traceback(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> str:
    """Write Python's traceback of ``error`` to a new file in the temporary folder; returns its path."""
    handle, path = tempfile.mkstemp(prefix=f"{PREFIX}-traceback-", suffix=".txt")  # a new file: no reader sees a part
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write("".join(tracebacks.format_exception(kind, error, traceback)))
    return path


class _ClosingLineHook:
    """``sys.excepthook`` that prints where the traceback went and :func:`summary` (or the traceback, then it)."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        if not issubclass(kind, Exception):  # KeyboardInterrupt and the like are not failures to explain
            self.previous(kind, error, traceback)
            return
        try:
            line = summary(error)
            where = None if _full_traceback_wanted() else _write_traceback(kind, error, traceback)
        except Exception:  # noqa: BLE001 - never hide the failure: Python's traceback then
            self.previous(kind, error, traceback)
            return
        if where is None:
            self.previous(kind, error, traceback)
        else:
            print(f"{PREFIX}: the run failed; full traceback in {where} ({TRACEBACK_ENV}=1 prints it)", file=sys.stderr)
        print(line, file=sys.stderr, flush=True)


class _AfterFirst:
    """A warnings filter's message matcher that matches the trust warning from its second occurrence on.

    Python's ``"once"`` action remembers a warning by its text, and MONAI's names the config files parsed, so
    each new list of configs would be shown again; this remembers the warning by :data:`TRUST_ADVISORY` alone.
    """

    def __init__(self):
        self.seen = False

    def match(self, text: str) -> bool:
        if TRUST_ADVISORY not in text:
            return False
        seen, self.seen = self.seen, True
        return seen


def _trust_warning_shown() -> bool:
    """Whether MONAI already showed the trust warning: bundles install the filter after their run's warning."""
    registry = getattr(sys.modules.get("monai.bundle.scripts"), "__warningregistry__", None) or {}
    keys = [*registry, *warnings.onceregistry]  # (text, category, line) of each warning shown once, by action
    return any(isinstance(key, tuple) and TRUST_ADVISORY in str(key[0]) for key in keys)


def show_trust_warning_once() -> None:
    """Show MONAI's config-trust warning the first time in this process only, not at every parse of configs.

    The filter goes last, so a filter of the user's (``-W``, ``PYTHONWARNINGS``, pytest's) still decides about
    every occurrence it matches, the first included. Installed after the warning was shown (from a bundle's
    ``initialize``), it hides the next ones. Installing twice has no further effect.
    """
    if not any(isinstance(entry[1], _AfterFirst) for entry in warnings.filters):
        matcher = _AfterFirst()
        matcher.seen = _trust_warning_shown()
        warnings.filters.append(("ignore", matcher, Warning, None, 0))


def install_excepthook() -> None:
    """Make an uncaught exception end with a few lines naming its root cause (see the module docstring).

    A run that does not fail is not affected, except that MONAI's config-trust warning is shown once per
    process (:func:`show_trust_warning_once`). Installing twice has no further effect.
    """
    show_trust_warning_once()
    if not isinstance(sys.excepthook, _ClosingLineHook):
        sys.excepthook = _ClosingLineHook(sys.excepthook)
