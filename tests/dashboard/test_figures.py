"""The Plotly figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dashboard import cka, figures, logs, overview
from dashboard.data import aggregate_seeds, collapse_seeds, load_results
from dashboard.figures.training import _thin
from dashboard.paper import paper_frame
from dashboard.runs import run_summaries
from dashboard.sample import SampleLayout


@pytest.fixture(scope="module")
def frame(sample: SampleLayout) -> pd.DataFrame:
    return load_results(sample.results_dir).frame


def _names(fig) -> list[str]:
    return [t.name for t in fig.data if t.showlegend is not False]


def test_label_efficiency(frame: pd.DataFrame) -> None:
    rows = frame[(frame["protocol"] == "finetune") & (frame["metric"] != "auc") | (frame["dataset"] != "idc")]
    # one seed: its own intervals (two seeds without the runner's summary rows have none to draw)
    rows = rows[(rows["protocol"] == "finetune") & (rows["seed"] == 0)]
    points = aggregate_seeds(rows, ["dataset", "method", "label_fraction", "metric"])
    published = aggregate_seeds(
        paper_frame().query("protocol == 'finetune'"), ["dataset", "method", "label_fraction", "metric"]
    )
    fig = figures.label_efficiency_figure(points, "fine-tuning", published)
    assert [a.text for a in fig.layout.annotations] == [
        "NIH ChestX-ray14",
        "Diabetic Retinopathy",
        "Breast Histopathology (IDC)",
    ]
    assert _names(fig)[:2] == ["MoCo", "MoCo (paper)"]
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["1%", "6%", "100%"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 3 * 4 and all(t.mode == "lines" for t in bands)
    line = next(t for t in fig.data if t.name == "MoCo + MSE" and t.xaxis == "x")
    nih = points[(points["dataset"] == "nih") & (points["method"] == "mse")].sort_values("label_fraction")
    np.testing.assert_allclose(line.y, nih["value"] * 100)
    json.loads(fig.to_json())


def test_probing(frame: pd.DataFrame) -> None:
    rows = frame[(frame["protocol"] == "probe") & (frame["seed"] == 0)]  # one seed: its own intervals
    points = aggregate_seeds(rows, ["dataset", "method", "block", "metric"])
    fig = figures.probing_figure(points)
    traces = [t for t in fig.data]
    assert len(traces) == 3 * 3
    assert all(t.error_y.array is not None and np.all(np.asarray(t.error_y.array) > 0) for t in traces)
    assert list(fig.layout.xaxis.ticktext) == ["B1", "B2", "B3", "B4"]


def test_heatmaps(frame: pd.DataFrame) -> None:
    matrices = {d: cka.method_block_matrix(frame, d, 0.01, "cka_linear") for d in ("idc", "nih", "empty")}
    matrices["empty"] = pd.DataFrame()
    fig = figures.method_block_figure(matrices, "cka_linear", 0.01)
    assert [t.name for t in fig.data] == ["nih", "idc"]  # paper order, empty panels left out
    np.testing.assert_allclose(fig.data[0].z, matrices["nih"].to_numpy())
    pair = cka.encoder_pairs(frame, "dr", "cka_rbf")[0]
    matrix = cka.block_matrix(frame, "dr", "cka_rbf", pair)
    fig = figures.block_matrix_figure(matrix, pair, "cka_rbf", "dr")
    assert np.asarray(fig.data[0].z).shape == (4, 4)
    assert fig.layout.xaxis.title.text == pair.labels[1] and fig.layout.yaxis.title.text == pair.labels[0]


def test_training_curves(sample: SampleLayout) -> None:
    frame, _ = logs.load_runs(logs.discover_runs([sample.pretrain_dir]))
    fig = figures.training_figure(frame, smoothing=0.5, log_y=True)
    stage_tags = {t for t in frame["tag"] if t.startswith("loss_layer")}
    intermediate = set(frame.loc[frame["tag"].isin(stage_tags), "method"])  # MSE and Barlow Twins: own scales
    assert len(fig.layout.annotations) == frame["tag"].nunique() + len(stage_tags) * (len(intermediate) - 1)
    assert fig.layout.annotations[0].text == "loss · total"
    assert fig.layout.yaxis.type == "log"
    runs_in_legend = _names(fig)
    assert len(runs_in_legend) == 6 and "MoCo + MSE · seed 1" in runs_in_legend
    raw = figures.training_figure(frame, x_axis="wall_time")
    assert raw.layout.xaxis.title.text == "minutes"


def test_training_curves_keep_iteration_and_epoch_values_apart() -> None:
    """The trainer logs iteration losses at step = iteration and epoch means at step = epoch under one tag."""
    steps = [1, 2, 3, 4, 1, 5, 6, 7, 8, 2]  # 4 iterations per epoch, the epoch mean logged after each epoch
    values = [5.0, 4.0, 3.0, 2.0, 3.5, 1.9, 1.8, 1.7, 1.6, 1.75]
    frame = pd.DataFrame(
        {
            "run": "moco_seed0",
            "method": "moco",
            "seed": 0,
            "source": "tb",
            "tag": "loss",
            "step": steps,
            "value": values,
            "wall_time": np.arange(10.0),
        }
    )
    frame = frame.assign(axis=logs.step_axis("loss", steps))
    assert list(frame["axis"]) == ["iteration"] * 4 + ["epoch"] + ["iteration"] * 4 + ["epoch"]
    assert list(logs.step_axis("val_loss", [1, 2])) == ["epoch", "epoch"]
    for x_axis in ("step", "wall_time"):
        fig = figures.training_figure(frame, x_axis=x_axis)
        assert len(fig.data) == 2  # one line of iteration values, one of epoch means
        for trace in fig.data:
            assert np.all(np.diff(np.asarray(trace.x, dtype=float)) > 0), x_axis  # no line doubles back
    fig = figures.training_figure(frame)
    assert [a.text for a in fig.layout.annotations] == ["loss · total", "loss · total (epoch mean)"]
    assert fig.layout.xaxis.title.text == "iteration" and fig.layout.xaxis2.title.text == "epoch"
    many = pd.concat([frame.assign(tag=f"health/effective_rank_layer{k}") for k in range(60)], ignore_index=True)
    assert len(figures.training_figure(many.assign(axis="epoch")).layout.annotations) == 60  # 20 rows of panels


def test_thinning_keeps_long_runs_light() -> None:
    x = np.arange(100_000, dtype=float)
    xs, ys = _thin(x, x * 2, limit=1000)
    assert len(xs) <= 1001 and xs[-1] == x[-1] and np.all(ys == xs * 2)


def test_delta_and_timings(frame: pd.DataFrame, sample: SampleLayout) -> None:
    table = overview.build_table("finetune", collapse_seeds(frame), {"nih": "mean_auc", "dr": "auc", "idc": "f1_macro"})
    fig = figures.delta_figure(overview.delta_to_reference(table), "moco")
    assert {t.name for t in fig.data} == {"MoCo + MSE", "MoCo + Barlow Twins", "Supervised"}
    assert len(fig.data) == 3 * 3
    summary = run_summaries(sample.results_dir, frame)
    fig = figures.timings_figure(summary)
    assert fig is not None and {t.name for t in fig.data} >= {"finetune", "probe"}
    assert figures.timings_figure(summary.drop(columns=[c for c in summary if c.startswith("time: ")])) is None


def test_chart_config() -> None:
    config = figures.chart_config("my_fig")
    assert config["toImageButtonOptions"]["filename"] == "my_fig" and config["displaylogo"] is False
