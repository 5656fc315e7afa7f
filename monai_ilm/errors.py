"""One closing line for a failed run: the root cause, and the file or setting it names.

A failure inside a bundle reaches the user wrapped several times: MONAI re-raises it as
``RuntimeError: Failed to instantiate component ...`` or ``Failed to evaluate ConfigExpression``, a
transform failure as ``applying transform ...``, and a DataLoader worker's as a copy whose message is
the worker's whole traceback. The cause is then in the middle of the log. :func:`install_excepthook`
adds, after Python's usual traceback, one line such as::

    monai-ilm: UnreadableImageError: image file '/data/dr/train/10_left.jpeg' cannot be read (...)

naming the innermost monai-ilm exception of the chain (raised by monai-ilm code or of a monai-ilm
class), or the innermost exception when none is. Bundles install it first thing in ``initialize``
(``"$monai_ilm.errors.install_excepthook()"``) and so does ``python -m monai_ilm``.
"""

from __future__ import annotations

import os
import re
import sys
from types import TracebackType

__all__ = ["PREFIX", "install_excepthook", "root_cause", "summary"]

PREFIX = "monai-ilm"
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


class _ClosingLineHook:
    """``sys.excepthook`` that runs the previous hook (the traceback), then prints :func:`summary`."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        self.previous(kind, error, traceback)
        if not issubclass(kind, Exception):  # KeyboardInterrupt and the like are not failures to explain
            return
        try:
            line = summary(error)
        except Exception:  # noqa: BLE001 - the traceback above is already out; never fail on top of it
            return
        print(line, file=sys.stderr, flush=True)


def install_excepthook() -> None:
    """Make an uncaught exception end with one line naming its root cause (see the module docstring).

    The previous ``sys.excepthook`` still runs first, so the traceback is printed as before; a run that
    does not fail is not affected. Installing twice has no further effect.
    """
    if not isinstance(sys.excepthook, _ClosingLineHook):
        sys.excepthook = _ClosingLineHook(sys.excepthook)
