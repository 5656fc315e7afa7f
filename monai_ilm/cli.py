"""Command line of monai-ilm (``python -m monai_ilm`` or ``monai-ilm``).

``demo`` runs the main job end to end on generated sample data: it writes a small NIH ChestX-ray14
data set in its published layout, pretrains MoCo, MoCo+MSE and MoCo+Barlow Twins with the NIH
bundle's quick settings, evaluates them as the paper does (linear probe, fine-tuning at 1 %, 6 %
and 100 % labels, layer-wise probing, CKA feature reuse, KS distance) into one results table,
and prints how to open the dashboard. ``experiment`` runs the same matrix on any bundle and data
set, or prints one command per cell for a cluster scheduler. ``export`` writes a self-contained bundle with a
pretraining run's weights (:mod:`monai_ilm.export`); ``bundle copy`` gives an editable copy of a shipped bundle.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from monai_ilm.errors import install_excepthook
from monai_ilm.experiment import bundles_root, parse_overrides, run_experiment
from monai_ilm.methods import METHODS

__all__ = ["build_parser", "main"]

logger = logging.getLogger("monai_ilm.cli")


def _csv(text: str, kind: type = str) -> list:
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def demo(
    output_dir: Path,
    seed: int,
    n_patients: int,
    image_size: int,
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = (0.01, 0.06, 1.0),
) -> None:
    """Sample NIH data -> pretrain three methods -> the paper's evaluation -> results table."""
    from monai_ilm.data.synthetic import make_nih_sample

    started = time.perf_counter()
    data_dir = output_dir / "sample_data" / "nih"
    if not (data_dir / "Data_Entry_2017_v2020.csv").exists():
        logger.info("writing a sample NIH ChestX-ray14 data set to %s", data_dir)
        make_nih_sample(data_dir, n_patients=n_patients, image_size=image_size, seed=seed)
    run_experiment(bundles_root() / "nih_chestxray_ilm", data_dir, output_dir, methods, fractions, (seed,), quick=True)
    print_tables(output_dir / "results")
    print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    print(f"Results table: {output_dir / 'results'}   checkpoints and logs: {output_dir / 'pretrain'}")
    print(f"Dashboard: streamlit run dashboard/app.py -- --results {output_dir / 'results'}")


def print_tables(results_dir: Path) -> None:
    """Print the paper's four tables and the paired differences, regenerated from a results directory.

    Each cell is the mean over the seeds present (see :mod:`monai_ilm.results.seeds` for its interval); the
    line above each table says how many seeds its cells combine.
    """
    from monai_ilm.results import read_results
    from monai_ilm.results.seeds import BASELINES
    from monai_ilm.results.tables import differences_table, paper_tables

    results = read_results(results_dir)
    seeds = sorted({int(s) for s in results.loc[results["kind"] == "run", "seed"].dropna()})
    methods = [*METHODS, "supervised", *sorted(set(results["method"]) - {*METHODS, "supervised"})]
    tables = dict(paper_tables(results, methods=methods))
    for baseline in BASELINES:
        table = differences_table(results, baseline=baseline, methods=methods)
        if table.value.size:
            tables[f"difference to {baseline} (paired bootstrap)"] = table
    for name, table in tables.items():
        note = _seed_note(table.seed_counts, seeds, paired=name.startswith("difference"))
        print(f"\n== {name} ==  {note}\n{table.formatted.to_string()}")


def _seed_note(counts: list[int], seeds: list[int], paired: bool = False) -> str:
    if not counts:
        return ""
    if counts == [1]:
        test = (
            "a paired bootstrap over the test resamples both runs share" if paired else "that run's test-set bootstrap"
        )
        return f"one seed per cell: the interval is {test}"
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (
        f"mean over {span} seeds per cell (seeds {', '.join(map(str, seeds))}); interval: two-stage bootstrap "
        "over seeds and test resamples"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monai_ilm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run_demo = commands.add_parser("demo", help="the main job on generated NIH-layout sample data")
    run_demo.add_argument("--output_dir", type=Path, default=Path("demo_output"))
    run_demo.add_argument("--seed", type=int, default=0)
    run_demo.add_argument("--n_patients", type=int, default=60)
    run_demo.add_argument("--image_size", type=int, default=96)
    run_demo.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    run_demo.add_argument("--fractions", default="0.01,0.06,1.0", help="comma-separated label fractions")

    experiment = commands.add_parser("experiment", help="pretrain and evaluate a method x fraction x seed matrix")
    experiment.add_argument("--bundle", required=True, help="a bundle folder or name, e.g. nih_chestxray_ilm")
    experiment.add_argument("--dataset_dir", type=Path, required=True)
    experiment.add_argument("--output_dir", type=Path, default=Path("runs"))
    experiment.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    experiment.add_argument("--fractions", default="0.01,0.06,1.0", help="comma-separated label fractions")
    experiment.add_argument("--seeds", default="0", help="comma-separated seeds")
    experiment.add_argument("--quick", action="store_true", help="add the bundle's quick.json (CPU minutes)")
    experiment.add_argument("--no_supervised", action="store_true", help="skip the randomly initialised baseline")
    experiment.add_argument("--print_commands", action="store_true", help="print one command per cell, run nothing")
    experiment.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a JSON config merged after the bundle's configs in every cell (repeatable)",
    )
    experiment.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="settings",
        help="a setting for every cell, e.g. max_epochs=50 (repeatable; values read as JSON)",
    )

    export = commands.add_parser("export", help="a self-contained bundle with a pretraining run's weights")
    export.add_argument("--bundle", required=True, help="the bundle that made the run, e.g. nih_chestxray_ilm")
    export.add_argument("--run", required=True, type=Path, help="<output_dir>/pretrain/<method>_seed<s>")
    export.add_argument("--to", required=True, type=Path, help="the new bundle folder (new or empty)")
    export.add_argument("--results", type=Path, default=None, help="results table (default <output_dir>/results)")
    export.add_argument("--image_size", type=int, default=None, help="the run's input size, if not in its record")

    bundle = commands.add_parser("bundle", help="work with the shipped bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    copy = bundle_commands.add_parser("copy", help="copy a shipped bundle to a folder, to edit its settings")
    copy.add_argument("name", help="e.g. nih_chestxray_ilm")
    copy.add_argument("dir", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    install_excepthook()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    if args.command == "demo":
        demo(
            args.output_dir.resolve(),
            args.seed,
            args.n_patients,
            args.image_size,
            _csv(args.methods),
            _csv(args.fractions, float),
        )
    elif args.command == "experiment":
        bundle = Path(args.bundle)
        if not bundle.exists():
            bundle = bundles_root() / args.bundle
        run_experiment(
            bundle,
            args.dataset_dir,
            args.output_dir,
            _csv(args.methods),
            _csv(args.fractions, float),
            _csv(args.seeds, int),
            quick=args.quick,
            supervised=not args.no_supervised,
            print_commands=args.print_commands,
            extra_configs=args.config,
            overrides=parse_overrides(args.settings),
        )
        if not args.print_commands:
            print_tables(args.output_dir / "results")
    elif args.command == "export":
        from monai_ilm.export import export_bundle

        target = export_bundle(args.bundle, args.run, args.to, results_dir=args.results, image_size=args.image_size)
        print(f"Bundle with the weights of {args.run}: {target}")
    elif args.command == "bundle":
        from monai_ilm.export import copy_bundle

        print(f"Copied {args.name} to {copy_bundle(args.name, args.dir)}")
