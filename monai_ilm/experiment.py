"""The experiment matrix of the paper: pretrain each method once per seed, then every protocol and fraction.

Each cell is one bundle run (``python -m monai.bundle run`` with the bundle's configs), so what the
runner does can always be typed by hand or sent to a cluster scheduler: ``print_commands`` prints
one command per cell instead of running it.

Only fresh results are reused. Every cell has a fingerprint (:mod:`monai_ilm.provenance`): its resolved
configuration that can change the numbers (nested components and ``--set a#b=...`` overrides included),
the identity of the data it reads (each image by size and modification time, the tables by content) and
the content hash of every file it reads (the pretraining checkpoint, the fine-tuned model, the predictions).
A cell is skipped only when its stored fingerprint matches; otherwise it runs again and its old outputs are
moved to ``<output_dir>/superseded/<time>/`` (kept, never tabulated). Each cell's log line says what
happened and why, e.g. ``run finetune mse seed 0 1 %: changed: max_epochs 2 -> 3`` or ``changed: 3 images
(3 replaced)`` (the data manifests behind such counts are kept in ``<output_dir>/data_identity/``). An
interrupted pretraining run with the same settings resumes from its newest checkpoint.

After the cells, :func:`monai_ilm.results.seeds.summarize` writes the rows that combine seeds and compare
methods, which the tables show.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import pydoc
import shlex
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from monai_ilm.bundle_usage import settings_read_by
from monai_ilm.data.identity import data_changes
from monai_ilm.data.label_fractions import check_fraction
from monai_ilm.datasets import bundle_datasets
from monai_ilm.errors import show_trust_warning_once
from monai_ilm.methods import check_method
from monai_ilm.provenance import (
    PRETRAINING_RECORD,
    bundle_data_identity,
    bundle_settings,
    changed_settings,
    code_version,
    fingerprint,
    read_data_manifest,
    write_data_manifest,
)
from monai_ilm.results import results_path, utc_now, write_json_atomic

__all__ = [
    "BUNDLE_DATASETS",
    "EVALUATION_CONFIG",
    "Cell",
    "bundle_command",
    "bundles_root",
    "parse_overrides",
    "plan_cells",
    "run_bundle",
    "run_experiment",
]

logger = logging.getLogger("monai_ilm.experiment")

DATA_MANIFESTS = "data_identity"
"""The folder under ``output_dir`` keeping each data identity's manifest (what changed between two runs)."""
EVALUATION_CONFIG = "evaluate.json"
"""The bundle config of every evaluation protocol, chosen by its ``protocol`` setting."""
BUNDLE_DATASETS = bundle_datasets()
"""``{bundle folder: data set}``, from :data:`monai_ilm.datasets.DATASETS`."""


def bundles_root() -> Path:
    """The folder holding the bundles: the installed package data, or the checkout's ``bundles/``.

    A wheel ships the repository's top-level ``bundles/`` as ``monai_ilm/bundles`` (see ``setup.py``); a
    source checkout (editable install or ``PYTHONPATH``) has them beside the package.

    Raises:
        FileNotFoundError: when neither holds the bundles.
    """
    from importlib.resources import files

    installed = Path(str(files("monai_ilm") / "bundles"))
    checkout = Path(__file__).resolve().parents[1] / "bundles"
    for root in (installed, checkout):
        if (root / "nih_chestxray_ilm" / "configs").is_dir():
            return root
    raise FileNotFoundError(
        f"bundles: expected the bundle folder in the installed package ({installed}) or the checkout ({checkout}), "
        "got neither (reinstall monai-ilm)."
    )


def _command_value(value: Any) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, Path) else json.dumps(value)


def bundle_command(
    bundle: Path, config: str, overrides: dict[str, object], extra_configs: Sequence[str] = ()
) -> list[str]:
    """The ``python -m monai.bundle run`` command line for ``bundle/configs/<config>`` (+ extra configs) and overrides.

    Extra configs may be names inside ``bundle/configs`` or paths of the user's own files.
    """
    configs = [str(bundle / "configs" / name) for name in (config, *extra_configs)]
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs)]
    command += ["--bundle_root", str(bundle), "--logging_file", str(bundle / "configs" / "logging.conf")]
    for key, value in overrides.items():
        command += [f"--{key}", _command_value(value)]
    return command


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["max_epochs=3", "layers=[\\"layer4\\"]"]`` -> ``{"max_epochs": 3, "layers": ["layer4"]}``.

    Values are read as JSON where they parse (numbers, booleans, null, lists), else kept as strings.

    Raises:
        ValueError: naming the pair that has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected KEY=VALUE, got {pair!r}.")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


@dataclass(frozen=True)
class Cell:
    """One bundle run: pretraining (``protocol="pretrain"``) or one evaluation protocol."""

    protocol: str
    method: str
    seed: int
    label_fraction: float = 1.0
    overrides: dict = field(default_factory=dict, compare=False, hash=False)

    def configs(self, quick: bool) -> list[str]:
        names = ["pretrain.json"] if self.protocol == "pretrain" else ["pretrain.json", EVALUATION_CONFIG]
        return names + (["quick.json"] if quick else [])

    def arguments(self) -> dict:
        args = {"method": self.method, "seed": self.seed, **self.overrides}
        if self.protocol != "pretrain":
            args.update(protocol=self.protocol, label_fraction=self.label_fraction)
        return args

    def __str__(self) -> str:
        fraction = "" if self.protocol == "pretrain" else f" {self.label_fraction:g}"
        return f"{self.protocol} {self.method} seed {self.seed}{fraction}"


def plan_cells(
    methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int], supervised: bool = True
) -> list[Cell]:
    """The cells of the paper's four tables and the KS analysis, in an order that respects dependencies.

    Pretraining first; then fine-tuning at every fraction (feature reuse and KS read its outputs),
    the linear probe and layer-wise probing at 100 %, feature reuse at every fraction below 100 %,
    and the KS distance of each fraction below 100 % against 100 %. ``supervised`` adds the
    randomly initialised baseline, fine-tuned at every fraction (Tables 1-2's Supervised column).

    Raises:
        ValueError: for an unknown method or a fraction outside (0, 1].
    """
    for method in methods:
        check_method(method)
    fractions = sorted({check_fraction("fractions", f) for f in fractions} | {1.0}, reverse=True)
    low = [f for f in fractions if f < 1.0]
    cells = [Cell("pretrain", m, s) for s in seeds for m in methods]
    for seed in seeds:
        for method in [*methods, *(["supervised"] if supervised else [])]:
            cells += [Cell("finetune", method, seed, f) for f in fractions]
        for method in methods:
            cells += [Cell("linear", method, seed), Cell("probe", method, seed)]
            cells += [Cell("feature_reuse", method, seed, f) for f in low]
            cells += [Cell("ks", method, seed, f) for f in low]
    return cells


# ---------------------------------------------------------------------------------------------- freshness
@dataclass
class _Matrix:
    """What every cell of one experiment shares: the bundle, the folders and the user's overrides."""

    bundle: Path
    dataset: str
    output_dir: Path
    common: dict[str, Any]
    quick: bool
    extra_configs: tuple[str, ...]
    stamp: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))

    def configs(self, cell: Cell) -> list[str]:
        return [*cell.configs(self.quick), *self.extra_configs]

    def arguments(self, cell: Cell) -> dict[str, Any]:
        # each workflow gets the settings it reads: a pretraining run refuses an evaluation setting, and back
        return settings_read_by(self.config_files(cell), {**self.common, **cell.arguments()})

    def config_files(self, cell: Cell) -> list[Path]:
        return [self.bundle / "configs" / name for name in self.configs(cell)]

    @property
    def manifests(self) -> Path:
        return self.output_dir / DATA_MANIFESTS

    def pretrain_dir(self, cell: Cell) -> Path:
        return self.output_dir / "pretrain" / f"{cell.method}_seed{cell.seed}"

    def supersede(self, paths: Sequence[Path], reason: str) -> None:
        """Move a cell's earlier outputs under ``superseded/<time>/`` (same relative paths), with the reason."""
        target_root = self.output_dir / "superseded" / self.stamp
        for path in paths:
            if not path.exists():
                continue
            target = target_root / path.relative_to(self.output_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(target))
            with (target_root / "reasons.txt").open("a", encoding="utf-8") as log:
                log.write(f"{path.relative_to(self.output_dir)}: {reason}\n")


def _evaluation_keys(bundle: Path) -> set[str]:
    """Settings declared by the evaluation config: they do not change a pretraining run."""
    return set(json.loads((bundle / "configs" / EVALUATION_CONFIG).read_text(encoding="utf-8")))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_SHOWN_CHANGES = 8  # a reason names this many changes, then counts the rest


def _data_change(stored: Mapping[str, Any], identity: Mapping[str, Any] | None, manifests: Path) -> list[str]:
    old = stored.get("data_identity")
    if identity is None or old == identity["digest"]:
        return []
    manifest = read_data_manifest(manifests, old) if old is not None else None
    return [data_changes(manifest, identity["manifest"]) if manifest is not None else "data identity"]


def _why_stale(
    stored: dict | None,
    settings: dict,
    inputs: dict | None = None,
    identity: Mapping[str, Any] | None = None,
    manifests: Path | None = None,
) -> str:
    if stored is None:
        return "new"
    if "fingerprint" not in stored:
        return "made without a fingerprint (by hand or by an older monai-ilm)"
    old_settings = dict(stored.get("settings", {}))
    changes = _data_change(old_settings, identity, manifests) if manifests is not None else []
    old_settings.pop("data_identity", None)
    changes += changed_settings(old_settings, {k: v for k, v in settings.items() if k != "data_identity"})
    if inputs is not None:
        old_inputs = {role: entry.get("sha256") for role, entry in stored.get("inputs", {}).items()}
        changes += [
            f"{role} content"
            for role in sorted(set(old_inputs) | set(inputs))
            if old_inputs.get(role) != inputs.get(role)
        ]
    if len(changes) > _SHOWN_CHANGES:
        changes = [*changes[:_SHOWN_CHANGES], f"and {len(changes) - _SHOWN_CHANGES} more"]
    return "changed: " + ", ".join(changes) if changes else "fingerprint differs"


def _pretrain(matrix: _Matrix, cell: Cell) -> bool:
    """Run (or reuse) one pretraining cell; returns whether it ran."""
    run_dir = matrix.pretrain_dir(cell)
    evaluation_keys = _evaluation_keys(matrix.bundle)
    settings = bundle_settings(matrix.config_files(cell), matrix.arguments(cell), exclude=evaluation_keys)
    identity = bundle_data_identity(matrix.config_files(cell), matrix.arguments(cell))
    settings["data_identity"] = identity["digest"]
    current = fingerprint(settings)
    record_path = run_dir / PRETRAINING_RECORD
    record = _read_json(record_path)
    finished = (run_dir / "models" / "checkpoint_final.pt").is_file() and (run_dir / "models" / "model.pt").is_file()
    if record is not None and record.get("fingerprint") == current:
        if record.get("status") == "done" and finished:
            logger.info("reuse %s: fingerprint %s matches", cell, current)
            return False
        logger.info("run %s: resuming the unfinished run with the same settings", cell)
    else:
        reason = _why_stale(record or {}, settings, None, identity, matrix.manifests) if run_dir.exists() else "new"
        logger.info("run %s: %s", cell, reason)
        matrix.supersede([run_dir], reason)
    write_data_manifest(matrix.manifests, identity)
    run_dir.mkdir(parents=True, exist_ok=True)
    content = {
        "fingerprint": current,
        "settings": settings,
        "code_version": code_version(),
        "host": socket.gethostname(),
        "started": utc_now(),
    }
    write_json_atomic(record_path, {**content, "status": "running"})
    run_bundle(matrix.bundle, matrix.configs(cell), matrix.arguments(cell))
    if not (run_dir / "models" / "model.pt").is_file():
        raise RuntimeError(
            f"pretraining {cell}: expected {run_dir / 'models' / 'model.pt'} (the best-validation weights every "
            "evaluation reads), got none (check that the validation split is not empty and val_interval <= max_epochs)."
        )
    write_json_atomic(record_path, {**content, "status": "done", "finished": utc_now()})
    return True


def _evaluate(matrix: _Matrix, cell: Cell) -> bool:
    """Run (or reuse) one evaluation cell; returns whether it ran."""
    from dataclasses import asdict

    from monai.bundle import ConfigParser

    from monai_ilm.evaluation.cell_identity import cell_data_identity

    parser = ConfigParser()
    parser.read_config([str(p) for p in matrix.config_files(cell)])
    parser.update({k: str(v) if isinstance(v, Path) else v for k, v in matrix.arguments(cell).items()})
    evaluation = parser.get_parsed_content("evaluation")
    inputs, settings = evaluation.input_hashes(), evaluation.settings()
    current = fingerprint(settings, inputs)
    csv = results_path(matrix.output_dir / "results", evaluation.run_id)
    metadata = ((_read_json(csv.with_suffix(".json")) or {}).get("metadata") or {}) if csv.is_file() else None
    if metadata and metadata.get("fingerprint") == current:
        logger.info("reuse %s: fingerprint %s matches", cell, current)
        return False
    identity = cell_data_identity(evaluation.protocol, asdict(evaluation)) if "data_identity" in settings else None
    reason = _why_stale(metadata, settings, inputs, identity, matrix.manifests)
    logger.info("run %s: %s", cell, reason)
    outputs = [csv, csv.with_suffix(".json"), csv.with_name(f"{csv.stem}.replicates.npz"), evaluation.cell_dir()]
    matrix.supersede(outputs, reason)
    if identity is not None:
        write_data_manifest(matrix.manifests, identity)
    run_bundle(matrix.bundle, matrix.configs(cell), matrix.arguments(cell))
    return True


def _config(paths: Sequence[Path]) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(p) for p in paths])
    return parser


def _takes_keyword(parser: Any, component_id: str, name: str) -> bool:
    """Whether the component at ``component_id`` (a ``_target_`` entry) accepts the keyword argument ``name``."""
    if component_id not in parser or not isinstance(parser[component_id], dict):
        return False
    target = parser[component_id].get("_target_")
    located = pydoc.locate(target) if isinstance(target, str) else None
    if located is None:
        return False
    try:
        parameters = inspect.signature(located).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: say no rather than guess
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _check_override_keys(bundle: Path, extra_configs: Sequence[str], overrides: Mapping[str, Any]) -> None:
    """A ``--set`` key must name a setting of the bundle: a typo would otherwise change nothing but the fingerprints.

    A nested key (``optimizer#momentum``) must name an existing entry of the merged pretraining or
    evaluation config, every step of its path included, or a keyword argument that the component at its
    parent path takes (``train#trainer#compile_kwargs``); other new entries belong in a ``--config`` file.

    Raises:
        ValueError: naming the unknown key and the closest settings.
    """
    configs = bundle / "configs"
    names = ["pretrain.json", "quick.json", EVALUATION_CONFIG]
    known: set[str] = set()
    for path in [configs / name for name in names] + [Path(p) for p in extra_configs]:
        known |= set(json.loads(path.read_text(encoding="utf-8")))
    merged: list[Any] = []
    for key in overrides:
        top = key.split("#")[0]
        if top not in known:
            close = difflib.get_close_matches(top, sorted(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"--set {key}: expected a setting of the bundle {bundle.name}, got an unknown key{hint}.")
        if "#" not in key:
            continue
        if not merged:  # the two configs a cell merges: pretraining, and an evaluation protocol's
            pretrain = [configs / "pretrain.json", configs / "quick.json", *map(Path, extra_configs)]
            merged = [_config(pretrain), _config([*pretrain[:2], configs / EVALUATION_CONFIG, *pretrain[2:]])]
        parent, _, last = key.rpartition("#")
        if not any(key in parser or _takes_keyword(parser, parent, last) for parser in merged):
            siblings = {
                f"{parent}#{name}"
                for parser in merged
                if parent in parser and isinstance(parser[parent], (dict, list))
                for name in (parser[parent] if isinstance(parser[parent], dict) else range(len(parser[parent])))
            }
            close = difflib.get_close_matches(key, sorted(siblings), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(
                f"--set {key}: expected an existing entry of the bundle {bundle.name}'s configs (add new entries in "
                f"a --config file), got an unknown key{hint}."
            )


def run_experiment(
    bundle: Path,
    dataset_dir: Path,
    output_dir: Path,
    methods: Sequence[str],
    fractions: Sequence[float],
    seeds: Sequence[int],
    quick: bool = False,
    supervised: bool = True,
    print_commands: bool = False,
    extra_configs: Sequence[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
) -> list[Cell]:
    """Run (or print) every cell of the matrix whose results are missing or stale; returns the cells run.

    Args:
        bundle: a monai-ilm bundle folder.
        dataset_dir: the data set, in its published layout.
        output_dir: pretraining runs, evaluation cells and the results table go here.
        methods: pretraining methods.
        fractions: label fractions of fine-tuning (100 % is always added).
        seeds: seeds; every seed is a full replicate of the matrix.
        quick: add the bundle's ``quick.json``.
        supervised: add the randomly initialised baseline.
        print_commands: print one command per cell and run nothing.
        extra_configs: the user's config files, merged after the bundle's configs in every cell.
        overrides: settings passed to every cell (``--set KEY=VALUE``), applied last.

    Raises:
        ValueError: for a bundle that is not one of monai-ilm's, or bad methods/fractions.
        FileNotFoundError: when ``bundle``, ``dataset_dir`` or an extra config does not exist.
    """
    show_trust_warning_once()  # every cell parses the bundle's configs, and MONAI would warn each time
    bundle, dataset_dir, output_dir = Path(bundle).resolve(), Path(dataset_dir).resolve(), Path(output_dir).resolve()
    if not (bundle / "configs" / "pretrain.json").is_file():
        raise FileNotFoundError(
            f"bundle: expected a monai-ilm bundle folder (holding configs/pretrain.json), got '{bundle}'."
        )
    if bundle.name not in BUNDLE_DATASETS:
        raise ValueError(f"bundle: expected one of {list(BUNDLE_DATASETS)}, got {bundle.name!r}.")
    if not dataset_dir.exists():
        raise FileNotFoundError(f"dataset_dir: expected an existing folder, got '{dataset_dir}', which does not exist.")
    extra = tuple(str(Path(path).resolve()) for path in extra_configs)
    for path in extra:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config: expected a JSON config file, got '{path}', which does not exist.")
    _check_override_keys(bundle, extra, overrides or {})
    cells = plan_cells(methods, fractions, seeds, supervised)
    common = {"dataset_dir": dataset_dir, "output_dir": output_dir, **dict(overrides or {})}
    matrix = _Matrix(bundle, BUNDLE_DATASETS[bundle.name], output_dir, common, quick, extra)
    ran = []
    for cell in cells:
        if print_commands:
            configs = matrix.configs(cell)
            print(shlex.join(bundle_command(bundle, configs[0], matrix.arguments(cell), configs[1:])))
            continue
        if (_pretrain if cell.protocol == "pretrain" else _evaluate)(matrix, cell):
            ran.append(cell)
    if not print_commands:
        from monai_ilm.results.seeds import summarize

        summarize(output_dir / "results")
    return ran


def run_bundle(bundle: Path, configs: Sequence[str], arguments: dict) -> None:
    """``python -m monai.bundle run`` in this process, with the same arguments as the printed command."""
    from monai.bundle import run

    run(
        config_file=[str(bundle / "configs" / name) for name in configs],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        bundle_root=str(bundle),
        **{key: str(value) if isinstance(value, Path) else value for key, value in arguments.items()},
    )
    sys.stdout.flush()
