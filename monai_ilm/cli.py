"""Command line of monai-ilm (``python -m monai_ilm`` or ``monai-ilm``).

``demo`` runs the main job end to end on generated sample data: it writes a small NIH ChestX-ray14
data set in its published layout, pretrains MoCo, MoCo+MSE and MoCo+Barlow Twins with the NIH
bundle's quick settings, evaluates them as the paper does (linear probe, fine-tuning at 1 %, 6 %
and 100 % labels, layer-wise probing, CKA feature reuse, KS distance) into one results table,
and prints how to open the dashboard. ``experiment`` runs the same matrix on any bundle and data
set, or prints one command per cell for a cluster scheduler. ``export`` writes a self-contained bundle with a
pretraining run's weights (:mod:`monai_ilm.export`); ``bundle copy`` gives an editable copy of a shipped bundle;
``render-bundles`` writes the shipped bundle folders from their one template (:mod:`monai_ilm.bundle_render`).
``preflight`` runs a few iterations of a bundle's pretraining at full size and reports memory, speed,
time estimates and problems (:mod:`monai_ilm.preflight`). ``dashboard`` serves the results dashboard that ships with
the package (Streamlit, the ``[dashboard]`` extra).
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

__all__ = ["build_parser", "main", "serve_dashboard"]

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
    print(f"Dashboard: python -m monai_ilm dashboard --results {output_dir / 'results'}")


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
        "over seeds and test resamples (ci_method percentile) or the pooled standard error (standard_error)"
    )


def dashboard_app() -> Path:
    """The dashboard's Streamlit script: ``dashboard/app.py`` beside the running ``monai_ilm`` package.

    The two folders sit side by side in a checkout and in an installed wheel (``site-packages``), so this is the app
    that belongs to this ``monai_ilm``, never a ``dashboard`` folder that happens to be in the current directory.
    """
    return Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def dashboard_arguments(app: Path, results: Path | None, port: int | None, headless: bool) -> list[str]:
    """Streamlit's command line that serves ``app``: ``run APP [--server.port N] [-- --results DIR]``.

    Args:
        app: the Streamlit script.
        results: the results directory handed to the app; None lets the app fall back to ``$MONAI_ILM_RESULTS``,
            then ``demo_output/results`` (:mod:`dashboard.config`).
        port: the server's port; None keeps Streamlit's (8501 or ``$STREAMLIT_SERVER_PORT``).
        headless: do not open a browser window (servers, SSH sessions).
    """
    arguments = ["run", str(app)]
    if port is not None:
        arguments += ["--server.port", str(port)]
    if headless:
        arguments += ["--server.headless", "true"]
    if results is not None:
        arguments += ["--", "--results", str(results)]
    return arguments


def serve_dashboard(results: Path | None, port: int | None = None, headless: bool = False) -> None:
    """Serve the results dashboard, as ``streamlit run dashboard/app.py -- --results DIR`` does from a checkout.

    Streamlit's own command line runs in this process, so there is one process to stop; it exits when the server
    stops. Every check runs before Streamlit starts.

    Args:
        results: the results directory (must exist when given); see :func:`dashboard_arguments`.
        port: the server's port (1-65535) or None.
        headless: do not open a browser window.

    Raises:
        SystemExit: streamlit is not installed, the app is missing, ``results`` is not a directory or ``port`` is
            out of range; the message says which and what was expected.
    """
    try:
        from streamlit.web import cli as streamlit_cli
    except ImportError as error:
        raise SystemExit(
            f"dashboard: expected streamlit, the dashboard's extra (pip install 'monai-ilm[dashboard]'), got {error}."
        ) from None
    app = dashboard_app()
    if not app.is_file():
        raise SystemExit(f"{app}: expected the dashboard's app beside the monai_ilm package, got no such file.")
    if results is not None and not results.is_dir():
        raise SystemExit(f"--results: expected a results directory (e.g. demo_output/results), got {results}.")
    if port is not None and not 1 <= port <= 65535:
        raise SystemExit(f"--port: expected a port number from 1 to 65535, got {port}.")
    arguments = dashboard_arguments(app, None if results is None else results.resolve(), port, headless)
    streamlit_cli.main(args=arguments, prog_name="streamlit")


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

    board = commands.add_parser("dashboard", help="serve the results dashboard (needs monai-ilm[dashboard])")
    board.add_argument("--results", type=Path, default=None, help="results directory, e.g. demo_output/results")
    board.add_argument("--port", type=int, default=None, help="server port (default: Streamlit's, 8501)")
    board.add_argument("--headless", action="store_true", help="do not open a browser window")

    check = commands.add_parser("preflight", help="a few iterations of a bundle's pretraining at full size")
    check.add_argument("--bundle", required=True, help="a bundle folder or name, e.g. nih_chestxray_ilm")
    check.add_argument("--dataset_dir", type=Path, required=True)
    check.add_argument("--iterations", type=int, default=3, help="training iterations (the first warms up)")
    check.add_argument("--output_dir", type=Path, default=Path("runs"), help="the real run's (free space checked)")
    check.add_argument("--keep", action="store_true", help="keep the preflight's temporary folder")
    check.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="settings", help="a setting, as experiment's"
    )

    bundle = commands.add_parser("bundle", help="work with the shipped bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    copy = bundle_commands.add_parser("copy", help="copy a shipped bundle to a folder, to edit its settings")
    copy.add_argument("name", help="e.g. nih_chestxray_ilm")
    copy.add_argument("dir", type=Path)

    render = commands.add_parser("render-bundles", help="write the bundle folders from the one bundle template")
    render.add_argument("--output", type=Path, default=None, help="the folder of the bundles (default: the shipped)")
    render.add_argument("--check", action="store_true", help="write nothing; fail naming each file that differs")
    return parser


def render_bundles(output: Path | None, check: bool) -> None:
    """Write (or, with ``check``, compare) every bundle folder rendered from :mod:`monai_ilm.bundle_render`.

    Raises:
        SystemExit: with ``check``, naming each file under ``output`` that differs from the rendering.
    """
    from monai_ilm.bundle_render import check_bundles, render_all

    output = bundles_root() if output is None else output
    if check:
        differing = check_bundles(output)
        if differing:
            raise SystemExit(
                f"{output}: expected the bundles rendered from monai_ilm/bundle_template, got {len(differing)} "
                f"differing file(s): {', '.join(differing)} (run python -m monai_ilm render-bundles)."
            )
        print(f"{output}: every bundle file equals its rendering.")
        return
    for folder in render_all(output):
        print(f"Rendered {folder}")


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
    elif args.command == "dashboard":
        serve_dashboard(args.results, args.port, args.headless)
    elif args.command == "preflight":
        from monai_ilm.preflight import run_preflight

        report = run_preflight(
            args.bundle, args.dataset_dir, parse_overrides(args.settings), args.iterations, args.output_dir, args.keep
        )
        print("\n".join(report.lines()))
        if not report.ok:
            raise SystemExit(1)
    elif args.command == "bundle":
        from monai_ilm.export import copy_bundle

        print(f"Copied {args.name} to {copy_bundle(args.name, args.dir)}")
    elif args.command == "render-bundles":
        render_bundles(args.output, args.check)
