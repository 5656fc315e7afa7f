"""The experiment matrix of the paper: pretrain each method once per seed, then every protocol and fraction.

Each cell is one bundle run (``python -m monai.bundle run`` with the bundle's configs), so what the
runner does can always be typed by hand or sent to a cluster scheduler: ``print_commands`` prints
one command per cell instead of running it. Cells already in the results table (or pretraining runs
with a final checkpoint) are skipped, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monai_ilm.data.splits import validate_fraction
from monai_ilm.methods import check_method
from monai_ilm.results import has_cell, read_results

__all__ = ["Cell", "plan_cells", "run_experiment", "PROTOCOL_CONFIGS"]

logger = logging.getLogger("monai_ilm.experiment")

# the bundle config of each evaluation protocol; "ks" reuses finetune.json with the protocol overridden
PROTOCOL_CONFIGS = {
    "finetune": "finetune.json",
    "linear": "linear_probe.json",
    "probe": "probe_layers.json",
    "feature_reuse": "feature_reuse.json",
    "ks": "finetune.json",
}
BUNDLE_DATASETS = {"nih_chestxray_ilm": "nih", "breast_histopathology_ilm": "idc", "diabetic_retinopathy_ilm": "dr"}


@dataclass(frozen=True)
class Cell:
    """One bundle run: pretraining (``protocol="pretrain"``) or one evaluation protocol."""

    protocol: str
    method: str
    seed: int
    label_fraction: float = 1.0
    overrides: dict = field(default_factory=dict, compare=False, hash=False)

    def configs(self, quick: bool) -> list[str]:
        names = ["pretrain.json"] if self.protocol == "pretrain" else ["pretrain.json", PROTOCOL_CONFIGS[self.protocol]]
        return names + (["quick.json"] if quick else [])

    def arguments(self) -> dict:
        args = {"method": self.method, "seed": self.seed, **self.overrides}
        if self.protocol != "pretrain":
            args.update(protocol=self.protocol, label_fraction=self.label_fraction)
        return args


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
    fractions = sorted({float(validate_fraction(f)) for f in fractions} | {1.0}, reverse=True)
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


def is_done(cell: Cell, dataset: str, output_dir: Path, results) -> bool:
    if cell.protocol == "pretrain":
        final = output_dir / "pretrain" / f"{cell.method}_seed{cell.seed}" / "models" / "checkpoint_final.pt"
        return final.is_file()
    return has_cell(results, dataset=dataset, method=cell.method, protocol=cell.protocol,
                    label_fraction=cell.label_fraction, seed=cell.seed)  # fmt: skip


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
) -> list[Cell]:
    """Run (or print) every cell of the matrix that is not done yet; returns the cells run.

    Raises:
        ValueError: for a bundle that is not one of monai-ilm's, or bad methods/fractions.
        FileNotFoundError: when ``bundle`` or ``dataset_dir`` does not exist.
    """
    from monai_ilm.cli import bundle_command  # the CLI formats commands; imported late to avoid a cycle

    bundle, dataset_dir, output_dir = Path(bundle).resolve(), Path(dataset_dir).resolve(), Path(output_dir).resolve()
    if not (bundle / "configs" / "pretrain.json").is_file():
        raise FileNotFoundError(f"bundle: {bundle} holds no configs/pretrain.json; expected a monai-ilm bundle folder.")
    if bundle.name not in BUNDLE_DATASETS:
        raise ValueError(f"bundle: expected one of {list(BUNDLE_DATASETS)}, got {bundle.name!r}.")
    if not dataset_dir.exists():
        raise FileNotFoundError(f"dataset_dir: {dataset_dir} does not exist.")
    dataset = BUNDLE_DATASETS[bundle.name]
    cells = plan_cells(methods, fractions, seeds, supervised)
    common = {"dataset_dir": dataset_dir, "output_dir": output_dir}
    done, ran = read_results(output_dir / "results"), []
    for cell in cells:
        configs = cell.configs(quick)
        arguments = {**common, **cell.arguments()}
        if print_commands:
            print(shlex.join(bundle_command(bundle, configs[0], arguments, configs[1:])))
            continue
        if is_done(cell, dataset, output_dir, done):
            logger.info("skip (done): %s", cell)
            continue
        logger.info("run: %s", cell)
        run_bundle(bundle, configs, arguments)
        ran.append(cell)
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
