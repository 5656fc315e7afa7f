"""Command line: ``python -m monai_ilm demo`` runs the main job end to end on generated sample data.

The demo writes a small NIH ChestX-ray14 dataset in its published on-disk layout, then runs the NIH
bundle's pretraining with ``quick.json`` once per method, exactly as a user would type it::

    python -m monai.bundle run --config_file "['.../pretrain.json','.../quick.json']" \\
        --dataset_dir <data> --output_dir <out> --method mse
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from monai_ilm.methods import METHODS, check_method

__all__ = ["main", "bundle_command", "bundles_root"]

logger = logging.getLogger("monai_ilm.cli")


def bundles_root() -> Path:
    """The ``bundles/`` folder of the source tree this package runs from.

    Raises:
        FileNotFoundError: when the package is not run from a checkout holding ``bundles/``.
    """
    root = Path(__file__).resolve().parents[1] / "bundles"
    if not root.is_dir():
        raise FileNotFoundError(f"bundles: expected the bundle folder at {root}; run from a monai-ilm checkout.")
    return root


def bundle_command(bundle: Path, config: str, overrides: dict[str, object], extra_configs: Sequence[str] = ("quick.json",)) -> list[str]:
    """The ``python -m monai.bundle run`` command line for ``bundle/configs/<config>`` plus overrides."""
    configs = [str(bundle / "configs" / name) for name in (config, *extra_configs)]
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs)]
    command += ["--bundle_root", str(bundle), "--logging_file", str(bundle / "configs" / "logging.conf")]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_command(command: list[str]) -> None:
    """Run a command, streaming its output; raise with the command line if it fails."""
    logger.info("$ %s", shlex.join(command))
    started = time.perf_counter()
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise SystemExit(f"command failed with exit code {result.returncode}: {shlex.join(command)}")
    logger.info("finished in %.1f s", time.perf_counter() - started)


def demo(output_dir: Path, methods: Sequence[str], seed: int, n_patients: int, image_size: int) -> None:
    """Generate sample NIH data and pretrain each method with the NIH bundle's quick settings."""
    from monai_ilm.data.synthetic import make_nih_sample

    for method in methods:
        check_method(method)
    data_dir = output_dir / "sample_data" / "nih"
    if not (data_dir / "Data_Entry_2017_v2020.csv").exists():
        logger.info("writing a sample NIH ChestX-ray14 dataset to %s", data_dir)
        make_nih_sample(data_dir, n_patients=n_patients, image_size=image_size, seed=seed)
    bundle = bundles_root() / "nih_chestxray_ilm"
    for method in methods:
        overrides = {"dataset_dir": data_dir, "output_dir": output_dir, "method": method, "seed": seed}
        run_command(bundle_command(bundle, "pretrain.json", overrides))
    print(f"\nDone. Checkpoints and TensorBoard logs: {output_dir / 'pretrain'}")
    print(f"Dashboard: streamlit run dashboard/app.py -- --results {output_dir / 'results'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_ilm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="pretrain every method on generated NIH-layout sample data")
    run_demo.add_argument("--output_dir", type=Path, default=Path("demo_output"))
    run_demo.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    run_demo.add_argument("--seed", type=int, default=0)
    run_demo.add_argument("--n_patients", type=int, default=60)
    run_demo.add_argument("--image_size", type=int, default=96)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    if args.command == "demo":
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        demo(args.output_dir.resolve(), methods, args.seed, args.n_patients, args.image_size)
