"""Settings given to a bundle run that its workflow does not read are refused, naming them and the workflow.

``python -m monai.bundle run --config_file pretrain.json --label_fraction 2`` adds ``label_fraction`` to the
config as a new top-level key; nothing in pretraining reads it, so the run would otherwise go on as if the
user had not asked for anything. A key the workflow reads is one reachable by references (``@key``) from
its ``initialize``, ``run`` and ``finalize`` lists; evaluation, which loads ``pretrain.json`` too, so does
not read ``max_epochs`` (its trainer is never run), and a misspelt key is read by nothing.

MONAI keeps no record of which keys were given, only the merged config. :func:`check_given_settings_used`
reads them from the keyword arguments of :func:`monai.bundle.scripts.create_workflow` (which
``monai.bundle run``, from the command line or in Python, goes through) on the call stack, and does nothing
for a workflow made otherwise (``ConfigWorkflow(...)`` directly, or settings checked outside a run).
Keys of the loaded config files are never refused: a shared file such as ``quick.json`` sets evaluation
settings for pretraining runs too.
"""

from __future__ import annotations

import difflib
import inspect
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle import scripts as bundle_scripts
from monai.bundle.reference_resolver import ReferenceResolver

from monai_ilm.checks import show

__all__ = [
    "ALWAYS_READ",
    "WORKFLOW_IDS",
    "GivenSettings",
    "check_given_settings_used",
    "given_settings",
    "read_keys",
    "settings_read_by",
    "unused",
]

# MONAI's own keys: read by MONAI (bundle_root by its properties, imports and _meta_ by the parser)
ALWAYS_READ = frozenset({"bundle_root", "imports", "_meta_"})
WORKFLOW_IDS = ("initialize", "run", "finalize")  # what ``monai.bundle run`` runs, unless told other ids


def read_keys(config: Mapping[str, object], roots: Iterable[str]) -> set[str]:
    """The top-level keys of ``config`` reachable by references from the ``roots`` ids (and the roots).

    Args:
        config: a parsed bundle config (macros and relative ids resolved), e.g. ``workflow.parser.config``.
        roots: the ids the workflow runs, e.g. ``("initialize", "run", "finalize")``.

    Returns:
        Every top-level key whose content may be used when the roots run, with :data:`ALWAYS_READ`.
    """
    read: set[str] = set()
    pending = [ReferenceResolver.split_id(root)[0] for root in roots]
    while pending:
        key = pending.pop()
        if key in read or key not in config:
            continue
        read.add(key)
        for ref in ReferenceResolver.find_refs_in_config(config[key], key):
            pending.append(ReferenceResolver.split_id(ref)[0])
    return read | ALWAYS_READ


def unused(given: Iterable[str], config: Mapping[str, object], roots: Iterable[str]) -> list[str]:
    """The ``given`` ids (``key`` or ``key#sub``) whose top-level key the workflow does not read, in order."""
    read = read_keys(config, roots)
    return [name for name in given if ReferenceResolver.split_id(name)[0] not in read]


def settings_read_by(
    config_files: Sequence[str | Path], settings: Mapping[str, object], roots: Iterable[str] = WORKFLOW_IDS
) -> dict[str, object]:
    """The ``settings`` that the workflow of ``config_files`` reads (the others it would refuse), in order.

    For a runner that passes one set of settings to several workflows (pretraining, evaluation): give each
    the settings it reads.
    """
    parser = ConfigParser()
    parser.read_config([str(path) for path in config_files])
    parser.update({key: str(value) if isinstance(value, Path) else value for key, value in settings.items()})
    parser.resolve_macro_and_relative_ids()
    ignored = set(unused(settings, parser.config, roots))
    return {key: value for key, value in settings.items() if key not in ignored}


class GivenSettings:
    """What a running ``monai.bundle run`` was given: its workflow, config files and settings (overrides).

    Args:
        workflow: the ``ConfigWorkflow`` being initialised.
        config_files: the config files it loaded, in order.
        settings: the id-value pairs given besides the workflow's own arguments (command line, ``args_file``).
    """

    def __init__(self, workflow: ConfigWorkflow, config_files: list[Path], settings: dict[str, object]):
        self.workflow = workflow
        self.config_files = config_files
        self.settings = settings

    def roots(self) -> list[str]:
        """The ids the workflow runs (``initialize``, ``run``, ``finalize`` unless told others)."""
        return [root for root in (self.workflow.init_id, self.workflow.run_id, self.workflow.final_id) if root]

    def declaring(self, key: str) -> list[str]:
        """The bundle's config files, besides the loaded ones, that declare the top-level ``key``."""
        loaded = {path.name for path in self.config_files}
        folder = self.config_files[0].parent if self.config_files else None
        if folder is None or not folder.is_dir():
            return []
        names = []
        for path in sorted(folder.glob("*.json")):
            if path.name in loaded or path.name == "metadata.json":
                continue
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(content, dict) and key in content:
                names.append(path.name)
        return names


def _frames(start: FrameType | None):
    while start is not None:
        yield start
        start = start.f_back


def given_settings() -> GivenSettings | None:
    """The :class:`GivenSettings` of the ``monai.bundle run`` on the call stack, or None outside one."""
    frames = list(_frames(sys._getframe(1)))
    workflow = next((f.f_locals["self"] for f in frames if isinstance(f.f_locals.get("self"), ConfigWorkflow)), None)
    creating = next((f for f in frames if f.f_code is bundle_scripts.create_workflow.__code__), None)
    if workflow is None or creating is None:
        return None
    arguments = creating.f_locals.get("_args")  # kwargs merged with args_file, as the workflow received them
    if not isinstance(arguments, Mapping):
        return None
    own = set(inspect.signature(type(workflow).__init__).parameters) | {"workflow_name", "config_file", "args_file"}
    settings = {key: value for key, value in arguments.items() if key not in own}
    config_file = creating.f_locals.get("config_file")
    files = [config_file] if isinstance(config_file, (str, Path)) else list(config_file or [])
    return GivenSettings(workflow, [Path(str(path)) for path in files], settings)


def check_given_settings_used(workflow_name: str) -> None:
    """Refuse a setting given to the running ``monai.bundle run`` that its workflow does not read.

    Args:
        workflow_name: the workflow as the message names it, e.g. ``"pretraining"``.

    Raises:
        ValueError: naming the first such setting, the workflow and its config files, and where the setting
            is read (another config file of the bundle) or the closest settings the workflow reads.
    """
    given = given_settings()
    if given is None:
        return
    config = given.workflow.parser.config
    ignored = unused(given.settings, config, given.roots())
    if not ignored:
        return
    name = ignored[0]
    raise ValueError(
        f"{name}: expected a setting that {workflow_name} reads "
        f"({', '.join(path.name for path in given.config_files)}), "
        f"got {show(given.settings[name])}, which it would ignore ({_hint(given, name, workflow_name)})."
    )


def _hint(given: GivenSettings, name: str, workflow_name: str) -> str:
    """Why ``name`` is not read: declared but not used here, a setting of another config, or a likely typo."""
    config = given.workflow.parser.config
    top = ReferenceResolver.split_id(name)[0]
    if given.config_files and top in ConfigParser.load_config_files([str(path) for path in given.config_files]):
        return f"nothing {workflow_name} runs reads it"
    declaring = given.declaring(top)
    if declaring:
        return f"a setting of {', '.join(declaring)}"
    close = difflib.get_close_matches(top, sorted(read_keys(config, given.roots()) - ALWAYS_READ), n=3)
    return f"did you mean {', '.join(close)}?" if close else "no config of the bundle has it"
