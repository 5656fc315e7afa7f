"""The paper's tables: best cells, differences to MoCo, published numbers, tidy downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import overview
from dashboard.data import collapse_seeds, load_results
from dashboard.paper import load_paper_json, paper_frame
from dashboard.sample import SampleLayout
from monai_ilm.results import make_row, validate

METRICS = {"nih": "mean_auc", "dr": "auc", "idc": "f1_macro"}


@pytest.fixture(scope="module")
def collapsed(sample: SampleLayout) -> pd.DataFrame:
    return collapse_seeds(load_results(sample.results_dir).frame)


@pytest.fixture(scope="module")
def published() -> dict:
    data = load_paper_json()
    frame = paper_frame(data)
    return {s.name: overview.build_table(s.name, frame, data["metrics"], data["cka_metric"]) for s in overview.TABLES}


def test_tables_have_the_paper_shape(collapsed: pd.DataFrame) -> None:
    linear = overview.build_table("linear", collapsed, METRICS)
    assert list(linear.value.columns) == ["moco", "mse", "barlow", "supervised"]
    assert list(linear.value.index) == ["nih", "dr", "idc"]
    finetune = overview.build_table("finetune", collapsed, METRICS)
    assert finetune.value.shape == (9, 4) and finetune.value.notna().all().all()
    reuse = overview.build_table("feature_reuse", collapsed, METRICS, "cka_rbf")
    assert reuse.value.shape == (9, 10)  # (dataset, method) x (1 %, 6 %) x (B1..B4, perf)
    probe = overview.build_table("probe", collapsed, METRICS)
    assert list(probe.value.columns) == ["B1", "B2", "B3", "B4"]
    # two seeds with the runner's seed_mean rows: the summary's two-stage interval (none is computed here)
    assert probe.formatted.iat[0, 0].count("(") == 1
    # CKA cells have no replicates, so their seed mean has no interval
    assert all("(" not in text for text in reuse.formatted.iloc[:, 0])
    with pytest.raises(ValueError):
        overview.build_table("nope", collapsed, METRICS)


def test_missing_metric_is_reported(collapsed: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="metric: expected a metric for dataset"):
        overview.build_table("finetune", collapsed, {"nih": "mean_auc"})


def _table(values: dict[str, list[float]], name: str = "linear"):
    rows = []
    for method, per_dataset in values.items():
        for dataset, v in zip(("nih", "dr"), per_dataset):
            if not np.isnan(v):
                rows.append(
                    make_row(
                        dataset=dataset,
                        method=method,
                        protocol="linear",
                        label_fraction=1.0,
                        seed=0,
                        metric="auc",
                        value=v,
                        n=10,
                        run_id="r",
                    )
                )
    return overview.build_table(name, validate(pd.DataFrame(rows)), {"nih": "auc", "dr": "auc"})


def test_best_and_delta_with_methods_as_columns() -> None:
    table = _table({"moco": [0.70, 0.80], "mse": [0.75, 0.78], "barlow": [0.72, np.nan]})
    best = overview.best_mask(table)
    assert best.loc["nih"].tolist() == [False, True, False]
    assert best.loc["dr"].tolist() == [True, False, False]
    delta = overview.delta_to_reference(table)
    assert np.isnan(delta.loc["nih", "moco"])
    assert delta.loc["nih", "mse"] == pytest.approx(0.05) and delta.loc["dr", "mse"] == pytest.approx(-0.02)
    assert np.isnan(delta.loc["dr", "barlow"])
    text, flags = overview.display_frame(table)
    assert text.columns.tolist() == ["Dataset", "MoCo", "MoCo + MSE", "MoCo + Barlow Twins"]
    assert text.iat[0, 2] == "★ 75.0  Δ+5.0" and text.iat[0, 1] == "70.0"
    assert flags.iat[0, 2] and not flags.iat[0, 0]
    plain, _ = overview.display_frame(table, show_delta=False)
    assert plain.iat[0, 2] == "★ 75.0"
    absent = overview.delta_to_reference(table, reference="supervised")
    assert absent.isna().all().all()


def test_best_and_delta_with_methods_as_rows(collapsed: pd.DataFrame) -> None:
    probe = overview.build_table("probe", collapsed, METRICS)
    best = overview.best_mask(probe)
    assert (best.groupby(level="dataset").sum() == 1).all().all()  # one best method per dataset and block
    delta = overview.delta_to_reference(probe)
    nih = probe.value.loc["nih"]
    assert delta.loc[("nih", "mse"), "B3"] == pytest.approx(nih.loc["mse", "B3"] - nih.loc["moco", "B3"])
    assert delta.xs("moco", level="method").isna().all().all()


def test_published_numbers_beside_ours(collapsed: pd.DataFrame, published: dict) -> None:
    finetune = overview.build_table("finetune", collapsed, METRICS)
    text, flags = overview.display_frame(finetune, paper=published["finetune"])
    assert text.columns.tolist()[:4] == ["Dataset", "Labels", "MoCo", "MoCo (paper)"]
    assert text.loc[(text["Dataset"] == "NIH ChestX-ray14") & (text["Labels"] == "1%"), "MoCo (paper)"].item() == (
        "59.2 (58.6–59.9)"
    )
    assert not flags["MoCo (paper)"].any()
    tidy = overview.tidy_table(finetune, paper=published["finetune"])
    assert {
        "dataset",
        "label_fraction",
        "method",
        "value",
        "ci_low",
        "ci_high",
        "best",
        "delta_vs_moco",
        "paper_value",
    } <= set(tidy.columns)
    assert len(tidy) == finetune.value.size
    cell = tidy[(tidy["dataset"] == "dr") & (tidy["label_fraction"] == 0.01) & (tidy["method"] == "mse")].iloc[0]
    assert cell["paper_value"] == pytest.approx(0.936)
    reuse = overview.build_table("feature_reuse", collapsed, METRICS, "cka_linear")
    text, _ = overview.display_frame(reuse, paper=published["feature_reuse"])
    assert "1% · B1 (paper)" in text.columns and "6% · perf" in text.columns


def test_low_label_gains(collapsed: pd.DataFrame) -> None:
    gains = overview.low_label_gains(overview.build_table("finetune", collapsed, METRICS))
    assert set(gains) == {"mse", "barlow", "supervised"}
    assert gains["mse"] > 0 and gains["supervised"] < 0  # as in the paper
    with pytest.raises(ValueError):
        overview.low_label_gains(overview.build_table("linear", collapsed, METRICS))


def test_paper_json_matches_the_published_tables(published: dict) -> None:
    frame = paper_frame()
    assert len(frame) == 153 and set(frame["run_id"]) == {"paper"}
    assert published["linear"].formatted.loc["dr", "mse"] == "84.8 (84.6–85.0)"
    assert published["linear"].formatted.loc["nih", "supervised"] == "79.8 (79.2–80.3)"
    assert published["finetune"].formatted.loc[("idc", 0.01), "barlow"] == "84.4 (84.1–84.7)"
    reuse = published["feature_reuse"].formatted
    assert reuse.loc[("idc", "moco"), (0.01, "B3")] == "0.98" and reuse.loc[("nih", "barlow"), (0.06, "perf")] == "70.0"
    assert published["probe"].formatted.loc[("dr", "mse"), "B4"] == "84.8 (84.6–85.0)"
    # Table 3's performance column repeats Table 2
    data = load_paper_json()
    for dataset in ("nih", "dr", "idc"):
        for method in ("moco", "mse", "barlow"):
            assert data["linear"][dataset][method] == data["probe"][dataset][method][3]  # block 4 probe = linear


def test_wide_tables_with_the_paper_are_compact(collapsed: pd.DataFrame, published: dict) -> None:
    reuse = overview.build_table("feature_reuse", collapsed, METRICS, "cka_linear")
    text, flags = overview.display_frame(reuse, paper=published["feature_reuse"], compact=True)
    # one column per cell of ours: ours · the paper's, short headers and data set names, no Δ, no "best" on CKA
    assert text.columns.tolist()[:4] == ["Dataset", "Method", "1% B1", "1% B2"] and "1% score" in text.columns
    assert len(text.columns) == 2 + reuse.value.shape[1] and set(text["Dataset"]) == {"NIH", "DR", "IDC"}
    cell = text.loc[(text["Dataset"] == "NIH") & (text["Method"] == "MoCo"), "1% B1"].item()
    ours = reuse.value.loc[("nih", "moco"), (0.01, "B1")]
    theirs = published["feature_reuse"].value.loc[("nih", "moco"), (0.01, "B1")]
    assert cell == f"{ours:.2f} · {theirs:.2f}"
    assert not text.map(lambda v: "Δ" in str(v)).to_numpy().any()
    assert not flags[[c for c in text.columns if "score" not in c and c not in ("Dataset", "Method")]].any().any()
    score = text.loc[(text["Dataset"] == "NIH") & (text["Method"] == "MoCo"), "1% score"].item()
    assert "(" not in score.split(" · ")[0]  # the fine-tuned score without its interval (Table 2 has it)
    probe = overview.build_table("probe", collapsed, METRICS)
    text, _ = overview.display_frame(probe, paper=published["probe"], compact=True)
    assert text.columns.tolist() == ["Dataset", "Method", "B1", "B2", "B3", "B4"]
    assert text["B1"].str.contains(" · ").all()
