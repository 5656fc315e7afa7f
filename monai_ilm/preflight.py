"""Preflight: a bundle's real pretraining at full size for a few iterations, before a run of days.

A setting that fails only at full size (memory at 512 px, bf16 through shuffle-BN, ``compile`` with the
device augmentation, a cache larger than the machine) would otherwise be found hours into a cluster job.
:func:`run_preflight` builds the bundle's pretraining workflow from its own ``configs/pretrain.json`` with
the user's settings (MONAI ``ConfigParser``, as ``python -m monai.bundle run`` does), checks the settings
and every image of both splits as the run's ``initialize`` does, then runs ``iterations`` training
iterations and the end of one epoch (validation, online kNN, representation health, checkpoints) on the
device at hand, on a sample of the data set (``batch_size`` images per iteration, one validation batch),
so nothing is decoded beyond what those iterations read.

It reports the resolved model, image size and batch; the peak memory of the device and of the host; the
training samples/s fed by the loader and without it (one batch repeated through the same step); the share
of the loop spent waiting for data; the time of an epoch and of the whole run, extrapolated from the data
set's size and ``max_epochs``; the bytes the cache will take; and every problem found with the setting to
change. Everything it writes goes to a temporary ``monai_ilm_preflight_*`` folder that is removed at the
end (``keep`` keeps it, with a ``PREFLIGHT.txt`` saying what it is): never into the run's ``output_dir``,
its cache or the results table.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from monai_ilm.recipe_checks import check_settings, parsed_settings
from monai_ilm.utils import available_memory as _available_memory  # a module name the tests can replace

__all__ = ["PreflightReport", "Problem", "run_preflight", "sample_rows"]

_SETTING = re.compile(r"^(?:--set )?([A-Za-z_][\w#]*): expected")
"""The setting named by a message in the house form ``"<setting>: expected <what>, got <value>."``."""
_ADVISED = ("batch_size", "skip_unreadable", "val_fraction", "num_workers", "cache_dir", "image_size")
"""Settings that the data checks' messages advise changing (they are not in the house form)."""


@dataclass(frozen=True)
class Problem:
    """One finding: the setting to change and what to do; ``stops`` when the run would fail with it."""

    setting: str
    message: str
    stops: bool = True

    def __str__(self) -> str:
        return f"{'PROBLEM' if self.stops else 'warning'} [{self.setting}] {self.message}"


@dataclass
class PreflightReport:
    """What :func:`run_preflight` found; :meth:`lines` is the printed report, ``ok`` its exit status."""

    bundle: str
    device: str
    settings: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem that would stop the run."""
        return not any(problem.stops for problem in self.problems)

    def add(self, setting: str, message: str, stops: bool = True) -> None:
        self.problems.append(Problem(setting, message, stops))

    def lines(self) -> list[str]:
        """The report as printed by ``python -m monai_ilm preflight``."""
        s, m, d, f = self.settings, self.model, self.data, self.figures
        out = [f"preflight of {self.bundle} on {self.device} (a few iterations at full size; nothing is a result)"]
        if m:
            out.append(
                f"model:      {m['method']} on {m['backbone']}, {m['query_parameters'] / 1e6:.1f} M trainable "
                f"parameters in the query encoder and head ({m['parameters'] / 1e6:.1f} M with the key encoder), "
                f"K = {s.get('queue_size')}"
            )
        if s:
            amp = f"autocast {s['amp_dtype']}" if s.get("amp") else "float32"
            out.append(
                f"input:      {s['image_size']} px, batch {s['batch_size']}, {amp}, channels_last "
                f"{s['channels_last']}, compile {s['compile']}, augment_on {s['augment_on']}, cache {s['cache']}, "
                f"num_workers {s['num_workers']}"
            )
        if d:
            out.append(
                f"data:       {d['train_images']} training / {d['val_images']} validation images; this preflight "
                f"read {d.get('train_sampled', 0)} / {d.get('val_sampled', 0)}"
            )
        out += [f"{name + ':':<11} {text}" for name, text in _figure_lines(f)]
        if not self.problems:
            out.append("problems:   none found")
        else:
            out.append(
                f"problems:   {sum(p.stops for p in self.problems)} that stop the run, "
                f"{sum(not p.stops for p in self.problems)} warnings"
            )
            out += [f"  {problem}" for problem in self.problems]
        out.append("preflight: OK" if self.ok else "preflight: FAILED (fix the settings named above)")
        return out


def _figure_lines(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if "device_peak_bytes" in f:
        total = f.get("device_total_bytes")
        share = f" of {_gib(total)}" if total else ""
        rows.append(("device mem", f"peak {_gib(f['device_peak_bytes'])} allocated{share} (max_memory_allocated)"))
    if "host_peak_bytes" in f:
        workers = f.get("host_worker_peak_bytes")
        extra = f", largest loader worker {_gib(workers)}" if workers else ""
        rows.append(("host mem", f"peak {_gib(f['host_peak_bytes'])} resident (ru_maxrss){extra}"))
    if "loader_samples_per_s" in f:
        rows.append(
            (
                "throughput",
                f"{f['loader_samples_per_s']:.2f} samples/s with the loader, {f['step_samples_per_s']:.2f} without it "
                f"(one batch repeated); {f['timed_iterations']} timed iteration(s)"
                + (" including the warm-up" if f.get("includes_warmup") else " after a warm-up"),
            )
        )
    if "data_wait_share" in f:
        rows.append(("data wait", f"{100 * f['data_wait_share']:.1f} % of the training loop"))
    if "epoch_s" in f:
        rows.append(
            (
                "estimate",
                f"{_duration(f['epoch_s'])} per epoch ({f['iterations_per_epoch']} iterations), validation "
                f"{_duration(f['validation_s'])} and kNN {_duration(f['knn_s'])} when they run; whole run "
                f"({f['max_epochs']} epochs) {_duration(f['run_s'])}, plus {_duration(f['cache_fill_s'])} to fill "
                "the cache once",
            )
        )
    if "cache_bytes" in f:
        rows.append(("cache", f["cache_text"]))
    if "knn_cache_bytes" in f:
        rows.append(("kNN cache", f"{_gib(f['knn_cache_bytes'])} in memory (knn_cache_rate x bank and val images)"))
    return rows


def _gib(count: float | None) -> str:
    from monai_ilm.data.compact_cache import format_bytes

    return "?" if count is None else format_bytes(int(count))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def sample_rows(rows: Sequence, size: int, seed: int = 0) -> list:
    """At most ``size`` rows of ``rows``, drawn without replacement with a private generator, in their order.

    The preflight's datalists: the bundle's own rows, so its images, labels and transforms are the run's.
    """
    if size >= len(rows):
        return list(rows)
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=size, replace=False))
    return [rows[i] for i in keep]


# ------------------------------------------------------------------------------------------- building
def _parser(bundle: Path, dataset_dir: Path, output_dir: Path, overrides: Mapping[str, Any]):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "pretrain.json"))
    values = {"bundle_root": str(bundle), "dataset_dir": str(dataset_dir), "output_dir": str(output_dir)}
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
    parser.update(values)
    return parser


def _setting_of(error: BaseException, default: str) -> str:
    """The setting an error names: its house-form prefix, else the first setting its advice names, else ``default``."""
    text = str(error).strip()
    match = _SETTING.match(text)
    if match:
        return match.group(1)
    named = [(text.find(name), name) for name in _ADVISED if name in text]
    return min(named)[1] if named else default


def _is_out_of_memory(error: BaseException | None) -> bool:
    # MONAI re-raises an error of a config expression ("$...run()") with the original as its cause: follow the chain
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
            return True
        text = str(error).lower()
        if "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def _free_disk(path: Path) -> int:
    existing = Path(path).resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -------------------------------------------------------------------------------------------- checks
def _check_static(report: PreflightReport, settings: Any, device: torch.device) -> None:
    """The problems visible from the settings alone (before any data is read)."""
    if settings.amp and settings.amp_dtype == "bfloat16" and device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            report.add(
                "amp_dtype",
                f"{torch.cuda.get_device_name(device)} has no bfloat16: set amp_dtype 'float16' (a gradient scaler "
                "is used) or amp false.",
            )
    if settings.amp and settings.amp_dtype == "float16" and device.type == "cpu":
        report.add("amp_dtype", "float16 autocast on a CPU runs without a gradient scaler: use 'bfloat16'.", False)
    if settings.val_interval > settings.max_epochs:
        report.add(
            "val_interval",
            f"{settings.val_interval} > max_epochs {settings.max_epochs}: no validation runs, so no models/model.pt "
            "(the weights every evaluation reads); set val_interval <= max_epochs.",
        )
    cores = os.cpu_count() or 1
    if settings.num_workers > cores:
        report.add(
            "num_workers", f"{settings.num_workers} loader processes on {cores} cores; set at most {cores}.", False
        )


def _check_cache(report: PreflightReport, settings: Any, dataset: Any, n_train: int, n_val: int) -> None:
    """The bytes of the training, validation and kNN caches against this machine's memory and disk."""
    from monai_ilm.data.compact_cache import CompactCacheDataset, cache_bytes, format_bytes

    available, size, channels = _available_memory(), settings.image_size, settings.channels
    if isinstance(dataset, CompactCacheDataset):
        nbytes = cache_bytes(n_train, size, dataset.shape[0])
        limit = available // 2
        where = settings.cache if settings.cache != "auto" else ("memory" if nbytes <= limit else "disk")
        text = f"{format_bytes(nbytes)} as uint8 ({dataset.shape[0]} channel(s)), kept on {where}"
        if settings.cache == "memory" and nbytes > available:
            report.add(
                "cache",
                f"'memory' needs {format_bytes(nbytes)}, {format_bytes(available)} is available: set cache 'auto' "
                "(memory-maps a file under cache_dir when it does not fit) or 'disk'.",
            )
        if where == "disk":
            free = _free_disk(Path(settings.cache_dir))
            text += f" under {settings.cache_dir} ({format_bytes(free)} free)"
            if free < nbytes:
                report.add(
                    "cache_dir",
                    f"the {format_bytes(nbytes)} cache file does not fit in the {format_bytes(free)} free under "
                    f"{settings.cache_dir}: set cache_dir to a larger disk.",
                )
    else:
        nbytes = int(4 * cache_bytes(n_train, size, channels) * float(settings.cache_rate))
        text = f"about {format_bytes(nbytes)} of float32 tensors (CacheDataset, cache_rate {settings.cache_rate})"
        if nbytes > available:
            report.add(
                "cache_rate",
                f"CacheDataset would keep about {format_bytes(nbytes)}, {format_bytes(available)} is available: "
                "lower cache_rate, or use augment_on 'device' with cache 'auto' (uint8, 1/4 of the bytes or less).",
            )
    val_bytes = int(4 * cache_bytes(n_val, size, channels) * float(settings.cache_rate))
    if val_bytes:
        text += f"; validation CacheDataset about {format_bytes(val_bytes)}"
    report.figures.update(cache_bytes=nbytes, cache_text=text, val_cache_bytes=val_bytes)
    if settings.knn_interval:
        knn_images = min(settings.knn_bank_size, n_train) + min(settings.knn_val_size, n_val)
        knn_bytes = int(4 * cache_bytes(knn_images, size, channels) * float(settings.knn_cache_rate))
        report.figures["knn_cache_bytes"] = knn_bytes
        if knn_bytes > available // 2:
            report.add(
                "knn_cache_rate",
                f"the online kNN keeps {format_bytes(knn_bytes)} of float32 images in memory, over half the "
                f"{format_bytes(available)} available: lower knn_cache_rate (or knn_bank_size / knn_val_size).",
                stops=knn_bytes > available,
            )


# ----------------------------------------------------------------------------------------- measuring
class _Timing:
    """Times each training iteration (from the previous one's end) and its wait for the loader."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[float] = []
        self.waits: list[float] = []
        self.batch: Any = None
        self._fetch = 0.0

    def attach(self, trainer: Any) -> None:
        from ignite.engine import Events

        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: self.marks.append(time.perf_counter()))
        trainer.add_event_handler(Events.GET_BATCH_STARTED, self._start_fetch)
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._end_fetch)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._end_iteration)

    def _start_fetch(self, _: Any) -> None:
        self._fetch = time.perf_counter()

    def _end_fetch(self, engine: Any) -> None:
        self.waits.append(time.perf_counter() - self._fetch)
        if self.batch is None:
            self.batch = engine.state.batch

    def _end_iteration(self, _: Any) -> None:
        _sync(self.device)
        self.marks.append(time.perf_counter())

    def rates(self, batch_size: int) -> tuple[float, float, int, bool, float]:
        """Samples/s and data-wait share over the iterations after the first (all of them if there is one)."""
        intervals = [b - a for a, b in zip(self.marks, self.marks[1:])]
        waits = self.waits[: len(intervals)]
        warm = len(intervals) == 1
        if not warm:
            intervals, waits = intervals[1:], waits[1:]
        step = statistics.median(intervals)
        return batch_size / step, sum(waits) / sum(intervals), len(intervals), warm, step


def _time_call(method_owner: Any, name: str, store: dict[str, float]) -> None:
    """Wrap ``method_owner.<name>`` so that its total seconds accumulate in ``store[name]``."""
    original = getattr(method_owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            store[name] = store.get(name, 0.0) + time.perf_counter() - started

    setattr(method_owner, name, timed)


def _bare_steps(trainer: Any, batch: Any, steps: int, device: torch.device) -> float:
    """Samples/s of the trainer's step on one batch repeated (device augmentation included, no loader)."""
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        trainer._iteration(trainer, batch)  # Ignite's process function: the whole step, without the loader
    _sync(device)
    first = batch[trainer.view_keys[0]] if trainer.augment is None else batch["image"]
    return len(first) * steps / (time.perf_counter() - started)


def _model_figures(parser: Any, settings: Any) -> dict[str, Any]:
    network = parser.get_parsed_content("network_def")
    query = sum(p.numel() for p in network.query_parameters())
    return {
        "method": settings.method,
        "backbone": settings.backbone,
        "query_parameters": query,
        "parameters": sum(p.numel() for p in network.parameters()),
    }


# -------------------------------------------------------------------------------------------- public
def run_preflight(
    bundle: str | Path,
    dataset_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    iterations: int = 3,
    output_dir: str | Path = "runs",
    keep: bool = False,
) -> PreflightReport:
    """Build the bundle's pretraining with ``overrides``, run ``iterations`` iterations and one epoch end; report.

    Args:
        bundle: a bundle folder, or the name of a shipped bundle (e.g. ``"nih_chestxray_ilm"``).
        dataset_dir: the data set, in its published layout.
        overrides: the run's settings (``--set KEY=VALUE``), as ``python -m monai_ilm experiment`` takes them.
        iterations: training iterations (the first one warms up and is left out of the rates when there are more).
        output_dir: the folder the real run will write to: only its free space (and ``cache_dir``'s) is
            checked; nothing is written there.
        keep: keep the temporary folder of the preflight's own outputs (printed) instead of removing it.

    Returns:
        The report; ``report.ok`` is False when a problem would stop the run.

    Raises:
        FileNotFoundError: when ``bundle`` is not a bundle folder or name.
        ValueError: for ``iterations`` below 1.
    """
    from monai_ilm.experiment import _check_override_keys, bundles_root

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations: expected an integer of at least 1, got {iterations!r}.")
    path = Path(bundle)
    if not (path / "configs" / "pretrain.json").is_file():
        path = bundles_root() / str(bundle)
    if not (path / "configs" / "pretrain.json").is_file():
        raise FileNotFoundError(
            f"bundle: expected a bundle folder holding configs/pretrain.json or a shipped bundle's name, "
            f"got '{bundle}'."
        )
    path, overrides = path.resolve(), dict(overrides or {})
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    report = PreflightReport(path.name, torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")
    try:
        _check_override_keys(path, (), overrides)
        user = _parser(path, Path(dataset_dir).resolve(), Path(output_dir).resolve(), overrides)
        report.settings = check_settings("pretraining", parsed_settings(user, "pretraining"), user.get())
    except (ValueError, FileNotFoundError) as error:
        report.add(_setting_of(error, "settings"), str(error))
        return report
    settings = SimpleNamespace(**report.settings)
    _check_static(report, settings, torch.device(user.get_parsed_content("device")))
    work = Path(tempfile.mkdtemp(prefix="monai_ilm_preflight_"))
    try:
        _run(report, path, Path(dataset_dir).resolve(), work, overrides, settings, iterations)
    finally:
        if keep:
            (work / "PREFLIGHT.txt").write_text(
                "Outputs of `python -m monai_ilm preflight`: a few iterations on a sample of the data. Not a result.\n"
            )
            report.figures["kept"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _run(
    report: PreflightReport,
    bundle: Path,
    dataset_dir: Path,
    work: Path,
    overrides: Mapping[str, Any],
    settings: Any,
    iterations: int,
) -> None:
    """The preflight's workflow: the run's own configs on a sample, into ``work``; fills ``report``."""
    from monai_ilm.data.integrity import check_datalists

    batch = settings.batch_size
    preflight = {
        **overrides,
        "output_dir": str(work / "output"),
        "cache_dir": str(work / "cache"),
        "max_epochs": 1,
        "epoch_length": iterations,
        "val_interval": 1,
        "knn_interval": 1 if settings.knn_interval else 0,
    }
    parser = _parser(bundle, dataset_dir, work / "output", preflight)
    for split, size in (("train", batch * iterations), ("validate", batch)):
        rows = parser.get(f"{split}#datalist")
        parser[f"{split}#datalist"] = {
            "_target_": "monai_ilm.preflight.sample_rows",
            "rows": rows,
            "size": size,
            "seed": "@seed",
        }
    phase = "loading the datalists"
    try:
        full = {
            split: parser.get_parsed_content(f"{key}#datalist#rows")
            for split, key in (("train", "train"), ("val", "validate"))
        }
        check_datalists(full, batch, skip_unreadable=settings.skip_unreadable, num_workers=settings.num_workers)
        n_train, n_val = len(full["train"]), len(full["val"])
        report.data.update(train_images=n_train, val_images=n_val)
        sampled = parser.get_parsed_content("train#datalist")
        phase = "initialize"
        parser.get_parsed_content("initialize")
        report.model = _model_figures(parser, settings)
        phase = "building the training data set (cache)"
        started = time.perf_counter()
        dataset = parser.get_parsed_content("train#dataset")
        fill_s = time.perf_counter() - started
        report.data.update(train_sampled=len(sampled), val_sampled=len(parser.get_parsed_content("validate#datalist")))
        _check_cache(report, settings, dataset, n_train, n_val)
        phase = "building the trainer"
        trainer = parser.get_parsed_content("train#trainer")
        evaluator = parser.get_parsed_content("validate#evaluator")
    except (ValueError, FileNotFoundError) as error:
        report.add(_setting_of(error, "dataset_dir"), f"{phase}: {error}")
        return
    except Exception as error:  # noqa: BLE001 - a failure to build is a finding too
        _report_failure(report, error, phase, settings, torch.device("cpu"))
        return
    device = torch.device(trainer.state.device if trainer.state.device is not None else "cpu")
    timing, times = _Timing(device), {}
    timing.attach(trainer)
    _time_call(evaluator, "run", times)
    knn = next((h for h in parser.get_parsed_content("train#handlers") if type(h).__name__ == "OnlineKNNHandler"), None)
    if knn is not None:
        _time_call(knn, "evaluate", times)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    phase = "training"
    try:
        parser.get_parsed_content("run")
        phase = "the step without the loader"
        step_rate = _bare_steps(trainer, timing.batch, max(1, iterations - 1), device)
    except Exception as error:  # noqa: BLE001 - every failure of the run is a finding of the preflight
        _report_failure(report, error, phase, settings, device)
        _memory_figures(report, device)
        return
    _memory_figures(report, device)
    loader_rate, wait, timed, warm, step_s = timing.rates(batch)
    iterations_per_epoch = settings.epoch_length or n_train // batch
    val_s = times.get("run", 0.0) / max(1, len(evaluator.data_loader)) * (n_val // batch)
    knn_s = 0.0
    if knn is not None:
        measured = len(knn.train_data) + len(knn.val_data)
        wanted = min(settings.knn_bank_size, n_train) + min(settings.knn_val_size, n_val)
        knn_s = times.get("evaluate", 0.0) / max(1, measured) * wanted
    epochs = settings.max_epochs
    knn_runs = 0 if knn is None else len({*range(settings.knn_interval, epochs + 1, settings.knn_interval), epochs})
    epoch_s = iterations_per_epoch * step_s
    report.figures.update(
        loader_samples_per_s=loader_rate,
        step_samples_per_s=step_rate,
        data_wait_share=wait,
        timed_iterations=timed,
        includes_warmup=warm,
        iterations_per_epoch=iterations_per_epoch,
        epoch_s=epoch_s,
        validation_s=val_s,
        knn_s=knn_s,
        max_epochs=epochs,
        run_s=epochs * epoch_s + (epochs // settings.val_interval) * val_s + knn_runs * knn_s,
        cache_fill_s=fill_s / max(1, len(sampled)) * n_train,
    )
    if wait > 0.2 and not warm:
        report.add(
            "num_workers",
            f"the loop waits for data {100 * wait:.0f} % of the time: raise num_workers (now {settings.num_workers}) "
            "or keep augment_on 'device' with a cache.",
            stops=False,
        )
    _check_memory_headroom(report, device)


def _memory_figures(report: PreflightReport, device: torch.device) -> None:
    report.figures["host_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if children:
        report.figures["host_worker_peak_bytes"] = children
    if device.type == "cuda":
        report.figures["device_peak_bytes"] = torch.cuda.max_memory_allocated(device)
        report.figures["device_total_bytes"] = torch.cuda.get_device_properties(device).total_memory


def _check_memory_headroom(report: PreflightReport, device: torch.device) -> None:
    from monai_ilm.data.compact_cache import format_bytes

    f = report.figures
    if device.type == "cuda" and f["device_peak_bytes"] > 0.9 * f["device_total_bytes"]:
        report.add(
            "batch_size",
            f"the step takes {format_bytes(f['device_peak_bytes'])} of {format_bytes(f['device_total_bytes'])}: "
            "little headroom left; a lower batch_size (or amp with channels_last) leaves room.",
            stops=False,
        )
    in_memory = f.get("knn_cache_bytes", 0) + f.get("val_cache_bytes", 0)
    if "kept on memory" in f.get("cache_text", "") or "CacheDataset" in f.get("cache_text", ""):
        in_memory += f.get("cache_bytes", 0)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    projected = f["host_peak_bytes"] + in_memory
    f["host_projected_bytes"] = projected
    if projected > total:
        report.add(
            "cache",
            f"the full run would hold about {format_bytes(projected)} in host memory (this preflight's peak plus the "
            f"caches), the machine has {format_bytes(total)}: set cache 'disk', lower cache_rate or knn_cache_rate.",
        )


def _report_failure(
    report: PreflightReport, error: BaseException, phase: str, settings: Any, device: torch.device
) -> None:
    if _is_out_of_memory(error):
        report.add(
            "batch_size",
            f"out of memory on {report.device} at batch {settings.batch_size}, {settings.image_size} px ({phase}): "
            f"lower batch_size (e.g. {max(1, settings.batch_size // 2)}), or set amp true and channels_last true.",
        )
        return
    while error.__cause__ is not None:  # MONAI wraps an error of "$...run()" in one that names only the expression
        error = error.__cause__
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    setting = _setting_of(error, "")
    if not setting:
        where = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]
        setting = "compile" if settings.compile and "dynamo" in traceback.format_exc().lower() else "settings"
        text = where
    report.add(setting, f"{phase} failed: {text}")
