"""Every page of the app under ``streamlit.testing``: generated results, empty results, malformed files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.config import ENV_VAR
from dashboard.sample import SampleLayout

from .conftest import APP, MALFORMED

# page script -> (title, number of Plotly charts with the sample results)
PAGES = {
    "views/overview.py": ("Results overview", 1),
    "views/label_efficiency.py": ("Label efficiency", 1),
    "views/probing.py": ("Layer-wise probing", 1),
    "views/feature_reuse.py": ("CKA feature reuse", 2),
    "views/findings.py": ("KS distance and findings", 1),
    "views/embeddings.py": ("Embedding explorer", 1),
    "views/training.py": ("Training curves", 1),
    "views/runs.py": ("Run browser", 1),
}


def _open(page: str, results: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(results))
    monkeypatch.setattr(sys, "argv", [str(APP)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    if page != "views/overview.py":
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _figure(at: AppTest, index: int) -> dict:
    """The ``index``-th Plotly figure of the page, decoded from its JSON spec as the browser reads it (so the
    assertions do not depend on how a Plotly release escapes characters such as ⚠ or <)."""
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _strings(node) -> list[str]:
    """Every string of a decoded figure: trace names and cell texts, titles, annotations, tick labels."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        node = list(node.values())
    return [s for child in node for s in _strings(child)] if isinstance(node, list) else []


@pytest.mark.parametrize("page", PAGES)
def test_page_with_results(page: str, sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(page, sample.results_dir, monkeypatch)
    title, charts = PAGES[page]
    assert at.title[0].value == title
    assert not at.error, _texts(at.error)
    assert not at.warning, _texts(at.warning)
    assert _charts(at) == charts


@pytest.mark.parametrize("page", PAGES)
def test_page_with_empty_results(page: str, empty_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(page, empty_results, monkeypatch)
    assert not at.error and _charts(at) == 0
    message = _texts(at.info)
    if page == "views/training.py":
        assert "No training logs found" in message
    elif page == "views/embeddings.py":
        assert "No embeddings next to" in message
    else:
        assert f"No results yet in `{empty_results}`" in message


@pytest.mark.parametrize("page", PAGES)
def test_page_with_malformed_files(page: str, malformed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(page, malformed, monkeypatch)
    errors = _texts(at.error)
    for name, problem in MALFORMED.items():
        assert f"`{name}`" in errors and problem in errors, (name, errors)
    assert "Traceback" not in errors and "could not be drawn" not in errors
    if page == "views/training.py":
        assert "moco_seed0/metrics.csv" in errors and "mse_seed0/tensorboard" in errors
    if page == "views/embeddings.py":
        assert "`results/broken.embeddings.npz`" in errors and "expected a NumPy .npz file" in errors
    if page in ("views/overview.py", "views/probing.py", "views/feature_reuse.py"):
        assert _charts(at) >= 1  # the good runs are still shown


def test_missing_directory_and_cli_argument(
    sample: SampleLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _open("views/overview.py", tmp_path / "nowhere", monkeypatch)
    assert "does not exist" in _texts(at.warning)
    monkeypatch.setattr(sys, "argv", [str(APP), "--results", str(sample.results_dir)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and len(at.dataframe) == 4
    assert f"`{sample.results_dir}` (from --results)" in _texts(at.sidebar.caption)


@pytest.mark.slow  # many reruns of the whole app (12-24 s on the shared 2 cores)
def test_overview_controls(sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open("views/overview.py", sample.results_dir, monkeypatch)
    assert at.toggle(key="ov_paper").value  # the paper's numbers are shown by default
    at.toggle(key="ov_paper").set_value(False).run()
    linear = at.dataframe[0].value
    assert list(linear.columns) == ["Dataset", "MoCo", "MoCo + MSE", "MoCo + Barlow Twins", "Supervised"]
    # supervised is best on NIH and DR by wide published margins (IDC: within the sample's seed noise)
    assert linear["MoCo + MSE"].str.contains("Δ").all() and linear["Supervised"].iloc[:2].str.startswith("★").all()
    # the runner's paired differences to MoCo (3 datasets x 2 fractions <= 6 % x MSE, Barlow Twins), with intervals
    assert len(at.metric) == 12 and all("95 % CI" in c.value for c in at.caption if "n = " in c.value)
    at.toggle(key="ov_paper").set_value(True).run()
    assert "MoCo (paper)" in at.dataframe[0].value.columns
    assert at.dataframe[0].value.loc[0, "MoCo (paper)"] == "74.4 (73.9–75.0)"
    at.toggle(key="ov_delta").set_value(False).run()
    assert not at.dataframe[1].value["MoCo + MSE"].str.contains("Δ").any()
    at.multiselect(key="filter_methods").set_value(["moco", "mse"]).run()
    assert list(at.dataframe[0].value.columns) == [
        "Dataset",
        "MoCo",
        "MoCo (paper)",
        "MoCo + MSE",
        "MoCo + MSE (paper)",
    ]
    at.multiselect(key="filter_protocols").set_value(["finetune"]).run()
    assert "filtered out in the sidebar" in _texts(at.info)
    at.selectbox(key="ov_metric_idc").set_value("auc").run()
    assert not at.exception and not at.error


@pytest.mark.slow  # many reruns of the whole app (12-24 s on the shared 2 cores)
def test_feature_reuse_controls(sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open("views/feature_reuse.py", sample.results_dir, monkeypatch)
    at.segmented_control(key="fr_kind").set_value("cka_linear_debiased").run()
    at.selectbox(key="fr_dataset").set_value("idc").run()
    pairs = at.selectbox(key="fr_pair").options
    assert "MoCo (pretrained) vs MoCo + MSE (pretrained)" in pairs
    at.selectbox(key="fr_pair").set_value("MoCo (pretrained) vs MoCo + MSE (pretrained)").run()
    assert not at.exception and not at.error and _charts(at) == 2


@pytest.mark.slow  # many reruns of the whole app (12-24 s on the shared 2 cores)
def test_curves_controls(sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open("views/label_efficiency.py", sample.results_dir, monkeypatch)
    at.radio(key="le_protocol").set_value("linear").run()
    assert "single points" in _texts(at.info)
    at.toggle(key="le_paper").set_value(True).run()
    assert not at.exception and _charts(at) == 1
    at.switch_page("views/probing.py").run()
    at.toggle(key="pr_paper").set_value(True).run()
    assert not at.exception and _charts(at) == 1
    at.switch_page("views/training.py").run()
    at.multiselect(key="tr_runs").set_value(["mse_seed0"]).run()
    at.toggle(key="tr_logy").set_value(True).run()
    at.radio(key="tr_x").set_value("wall_time").run()
    assert not at.exception and _charts(at) == 1
    at.multiselect(key="tr_runs").set_value([]).run()
    assert "Choose at least one run" in _texts(at.info)


def test_run_browser_narrows_to_a_cell(sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open("views/runs.py", sample.results_dir, monkeypatch)
    assert len(at.dataframe[0].value) == sample.n_runs
    at.selectbox(key="rb_protocol").set_value("probe").run()
    at.selectbox(key="rb_dataset").set_value("dr").run()
    at.selectbox(key="rb_method").set_value("mse").run()
    assert at.dataframe[0].value["Run"].tolist() == ["probe-dr-mse-s0", "probe-dr-mse-s1", "summary-dr"]
    at.selectbox(key="rb_run_id").set_value("probe-dr-mse-s1").run()
    assert not at.exception
    markdown = _texts(at.markdown)
    assert "pretrain/mse_seed1/checkpoint_final.pt" in markdown and "**Seed**  \n1" in markdown
    assert len(at.json) == 2


def test_pages_with_demo_results(demo_like: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real-run shapes: banner, paired difference with interval and n, block x block CKA with health flags, KS and
    per-finding views, iteration and epoch curves apart, pretraining runs with their code version."""
    at = _open("views/overview.py", demo_like, monkeypatch)
    banner = _texts(at.info)
    assert "generated sample data" in banner and "Quick settings: 64 px images, 2 pretraining epoch(s)" in banner
    assert "One seed" in banner and "n = 36" in banner
    assert not at.error and not at.exception
    headline = [m for m in at.metric if "MoCo + MSE" in m.label]
    assert headline and headline[0].value == "+5.0 points"
    assert "95 % CI -8.0 to +17.0 · n = 36 · seeds 0" in _texts(at.caption)
    assert at.toggle(key="ov_paper").value  # the paper's numbers are shown by default
    at.switch_page("views/feature_reuse.py").run()
    assert not at.exception and not at.error, _texts(at.error)
    assert _charts(at) == 2  # method x block and the real block x block matrix
    assert at.get("segmented_control")[0].options == ["CKA (linear)"]  # only the kernel the evaluation computed
    assert "collapsed" in _texts(at.caption) and "⚠" in _texts(at.caption)
    # MoCo's blocks collapsed (effective rank 1.1-1.4 < 2; MoCo + MSE has no health logs): its row of the method x
    # block heatmap and every cell of the block x block matrix of MoCo pretrained vs fine-tuned carry ⚠
    (by_method,) = _figure(at, 0)["data"]
    assert dict(zip(by_method["y"], by_method["text"])) == {"MoCo": ["1.00 ⚠"] * 4, "MoCo + MSE": ["1.00"] * 4}
    (matrix,) = _figure(at, 1)["data"]
    assert matrix["y"] == ["B1", "B2", "B3", "B4"]
    assert all(cell.endswith(" ⚠") for row in matrix["text"] for cell in row), matrix["text"]
    assert "a block of a pretrained encoder in this pair collapsed" in _texts(at.caption)
    figure_strings = [text for i in range(_charts(at)) for text in _strings(_figure(at, i))]
    assert "★" not in _texts(at.caption) + "".join(figure_strings)
    at.switch_page("views/findings.py").run()
    assert not at.exception and not at.error and _charts(at) == 2  # KS and per-finding AUC
    at.switch_page("views/training.py").run()
    assert not at.exception and not at.error and _charts(at) == 1
    at.switch_page("views/runs.py").run()
    assert not at.exception and not at.error
    assert any("Git commit" in df.value.columns for df in at.dataframe)


def _count(at: AppTest, kind: str) -> int:
    def walk(node) -> int:
        own = int(getattr(node, "type", "") == kind)
        return own + sum(walk(child) for child in getattr(node, "children", {}).values())

    return walk(at._tree)


def test_embedding_explorer(sample: SampleLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open("views/embeddings.py", sample.results_dir, monkeypatch)
    assert at.multiselect(key="emb_files").value == [str(sample.results_dir / "probe-nih-barlow-s0.embeddings.npz")]
    assert "No points selected" in _texts(at.caption) and _count(at, "image") == 0
    picker = at.multiselect(key="emb_pick")
    picker.set_value(picker.options[:2]).run()
    assert not at.exception and "2 selected point(s)" in _texts(at.markdown) and _count(at, "image") == 2
    at.radio(key="emb_projection").set_value("t-SNE").run()
    at.selectbox(key="emb_color").set_value("method").run()
    at.multiselect(key="emb_files").set_value(at.multiselect(key="emb_files").options).run()
    assert not at.exception and not at.error and _charts(at) == 1
    assert "each encoder has its own feature space" in _texts(at.caption)
    figure = _figure(at, 0)
    assert figure["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    assert "MoCo + Barlow Twins" in [trace["name"] for trace in figure["data"]]


def test_embedding_explorer_notes_missing_images(sample: SampleLayout, monkeypatch, tmp_path: Path) -> None:
    import numpy as np

    from monai_ilm.results.embeddings import write_embeddings

    results = tmp_path / "results"
    ids = [str(sample.root / "sample_images" / "test_000.png"), str(tmp_path / "moved.png"), "patient-7"]
    write_embeddings(results, "probe-nih-moco-s0", np.eye(3) + 0.1, ids, labels=np.array([0, 1, 1]), method="moco")
    at = _open("views/embeddings.py", results, monkeypatch)
    picker = at.multiselect(key="emb_pick")
    picker.set_value(picker.options).run()
    assert not at.exception and _count(at, "image") == 1
    assert "2 image(s) not shown" in _texts(at.caption)


def test_embedding_explorer_shows_the_middle_slice_of_each_volume(monkeypatch, tmp_path: Path) -> None:
    """Volumes have no picture file: the explorer shows the stored middle slice (3D evaluation's ``pictures``)."""
    import numpy as np

    from monai_ilm.results.embeddings import write_embeddings

    results = tmp_path / "results"
    ids = ["volumes/p000_0.nii.gz", "volumes/p001_0.nii.gz", "volumes/p002_0.nii.gz"]  # relative: no file to open
    slices = np.stack([np.full((16, 16), 60 * k, dtype=np.uint8) for k in range(3)])
    features = np.eye(3) + 0.1
    write_embeddings(results, "probe-volumes-mse-s0", features, ids, labels=np.array([0, 1, 1]), pictures=slices)
    at = _open("views/embeddings.py", results, monkeypatch)
    picker = at.multiselect(key="emb_pick")
    picker.set_value(picker.options).run()
    assert not at.exception and _count(at, "image") == 3
    assert "not shown" not in _texts(at.caption)
