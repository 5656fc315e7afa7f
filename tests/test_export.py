"""Exported bundles describe the run they came from, their README commands work as written, and their inference
installs and runs without monai-ilm (issue 22, items 4 and 5).

The run is made as the README's first path makes it, ``python -m monai.bundle run`` with ``configs/quick.json``
(ResNet-18, 64 px, queue 256), not by the experiment runner; the expected shapes come from those settings and
from torchvision's own ResNet-18, not from the export.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement

from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.results import make_row, write_results
from monai_ilm.run_record import RUN_RECORD

BUNDLE = "nih_chestxray_ilm"
BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundles" / BUNDLE
QUICK = json.loads((BUNDLE_DIR / "configs" / "quick.json").read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, Path]:
    """``(data folder, run folder)`` of one quick MoCo+MSE run made with ``monai.bundle run``."""
    from monai.bundle import run as bundle_run

    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    make_nih_sample(data, n_patients=30, image_size=64, seed=0)
    configs = BUNDLE_DIR / "configs"
    bundle_run(
        config_file=[str(configs / "pretrain.json"), str(configs / "quick.json")],
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        bundle_root=str(BUNDLE_DIR),
        dataset_dir=str(data),
        output_dir=str(root / "out"),
        method="mse",
        epoch_length=3,
    )
    return data, root / "out" / "pretrain" / "mse_seed0"


def export(run: Path, to: Path, **kwargs) -> Path:
    from monai_ilm.export import export_bundle

    return export_bundle(BUNDLE, run, to, results_dir=to.parent / "no_results", **kwargs)


def section(readme: str, title: str) -> str:
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_export_of_a_bundle_run_says_what_the_run_trained(quick_run, tmp_path):
    """The defect: 512 px, ResNet-50, 2048-d and queue 65,536 for a 64 px ResNet-18 run with a 512-d output."""
    import torchvision

    _, run = quick_run
    exported = export(run, tmp_path / "bundle")
    width = torchvision.models.resnet18().fc.in_features  # the pooled width of a ResNet-18: 512
    size, queue = QUICK["image_size"], QUICK["queue_size"]
    metadata = json.loads((exported / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [size, size]
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == width
    for text in (metadata["description"], metadata["changelog"][metadata["version"]], metadata["pred_classes"]):
        assert "resnet18" in text and "ResNet-50" not in text and "2048" not in text, text
    assert f"{size} x {size} px" in metadata["description"] and f"queue {queue}" in metadata["description"]
    assert f"{size} px" in metadata["changelog"][metadata["version"]]
    readme = (exported / "docs" / "README.md").read_text()
    for wrong in ("ResNet-50", "2048", "65,536", "65536", "512 x 512", "512 px", "3 × 512"):
        assert wrong not in readme, wrong
    overview = section(readme, "Model Overview")
    assert f"| queue | {queue} keys, temperature 0.07 |" in overview
    assert f"| input (`image`) | 3 x {size} x {size}" in overview and f"{width}-d" in overview
    assert f"| epochs | {QUICK['max_epochs']} " in overview and "| seed | 0 |" in overview
    assert f"(N, {width})" in section(readme, "Output")
    # the exported recipe is the run's, so evaluating these weights builds the network they fit
    pretrain = json.loads((exported / "configs" / "pretrain.json").read_text())
    assert (pretrain["backbone"], pretrain["image_size"], pretrain["queue_size"]) == ("resnet18", size, queue)
    assert pretrain["dataset_dir"] == "/data/nih-chestxray14"  # paths keep the bundle's defaults


def test_export_of_a_run_without_record_warns_and_reads_the_weights(quick_run, tmp_path, caplog):
    _, run = quick_run
    old = tmp_path / "pretrain" / "mse_seed0"
    shutil.copytree(run, old)
    (old / RUN_RECORD).unlink()
    with caplog.at_level(logging.WARNING, logger="monai_ilm.export"):
        exported = export(old, tmp_path / "bundle")
    assert any("no run record" in r.getMessage() and "--image_size" in r.getMessage() for r in caplog.records)
    metadata = json.loads((exported / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == 512  # read from the weights
    readme = (exported / "docs" / "README.md").read_text()
    assert "The run kept no record of its settings" in readme and "the run did not record it" in readme
    given = export(old, tmp_path / "given", image_size=64)
    assert json.loads((given / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"][
        "spatial_shape"
    ] == [64, 64]


def test_a_record_of_other_weights_is_refused(quick_run, tmp_path):
    _, run = quick_run
    other = tmp_path / "pretrain" / "mse_seed0"
    shutil.copytree(run, other)
    record = json.loads((other / RUN_RECORD).read_text())
    record["settings"]["backbone"] = "resnet50"
    (other / RUN_RECORD).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"run_record.json: expected the backbone of the weights \('resnet18'\)"):
        export(other, tmp_path / "bundle")


def test_gitignore_keeps_the_weights_out_of_a_commit(quick_run, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    exported = export(quick_run[1], tmp_path / "bundle")
    subprocess.run(["git", "init", "-q", str(exported)], check=True)
    ignored = subprocess.run(
        ["git", "-C", str(exported), "check-ignore", "models/model.pt", "models/model.ts", "configs/metadata.json"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["models/model.pt", "models/model.ts"]


def test_performance_puts_the_headline_table_first_and_the_details_beside_it(quick_run, tmp_path):
    _, run = quick_run
    results = tmp_path / "results"
    checkpoint = str(run / "models" / "model.pt")
    values = {("linear", 0.01): 0.61, ("linear", 1.0): 0.71, ("finetune", 0.01): 0.63, ("finetune", 1.0): 0.74}
    rows = []
    for (protocol, fraction), value in values.items():
        own = {"dataset": "nih", "method": "mse", "protocol": protocol, "label_fraction": fraction, "n": 40}
        own.update(seed=0, run_id=f"{protocol}_{fraction}_s0", checkpoint=checkpoint)
        rows.append(make_row(**own, metric="mean_auc", value=value, ci_low=value - 0.1, ci_high=value + 0.1))
        rows += [make_row(**own, metric=f"auc_{finding}", value=0.5) for finding in ("Atelectasis", "Cardiomegaly")]
        mean = {**own, "seed": None, "kind": "seed_mean", "seeds": "0,1,2", "run_id": f"summary_{protocol}_{fraction}"}
        rows.append(make_row(**mean, metric="mean_auc", value=value + 0.05, ci_low=value - 0.02, ci_high=value + 0.12))
    reuse = {"dataset": "nih", "method": "mse", "protocol": "feature_reuse", "label_fraction": 0.01, "n": 40}
    reuse.update(seed=0, run_id="reuse_s0", checkpoint=checkpoint, metric="cka_linear", value=0.9)
    rows += [make_row(**reuse, block=block) for block in (1, 2, 3, 4)]
    for run_id in dict.fromkeys(row["run_id"] for row in rows):  # one results file per run, as evaluations write
        write_results(results, [row for row in rows if row["run_id"] == run_id])
    from monai_ilm.export import PERFORMANCE_DETAILS, export_bundle

    exported = export_bundle(BUNDLE, run, tmp_path / "bundle", results_dir=results)
    performance = section((exported / "docs" / "README.md").read_text(), "Performance")
    table = [line for line in performance.splitlines() if line.startswith("| ") and "---" not in line]
    assert table[0].startswith("| protocol | label fraction | mean_auc: mean over seeds | interval | seeds |")
    # one line per protocol x label fraction: the seed mean with its interval, then this run's value with its own
    assert sorted(table[1:]) == sorted(
        f"| {p} | {f:g} | {v + 0.05:.4f} | {v - 0.02:.4f} - {v + 0.12:.4f} | 0,1,2 | {v:.4f} | "
        f"{v - 0.1:.4f} - {v + 0.1:.4f} | 40 |"
        for (p, f), v in values.items()
    )
    assert "auc_Atelectasis" not in performance and "cka_linear" not in performance
    assert "(12: per finding" in performance and PERFORMANCE_DETAILS.split("/")[1] in performance
    details = (exported / PERFORMANCE_DETAILS).read_text()
    assert details.count("| auc_Atelectasis |") == 4 and details.count("| cka_linear |") == 4
    assert "| mean_auc |" not in details


def zoo_requirements(metadata: dict) -> list[str]:
    """The pip lines the model zoo's ``ci/get_bundle_requirements.py`` makes from a metadata.json: monai, torch
    and numpy pinned to the metadata's versions, then every package of ``optional_packages_version`` and
    ``required_packages_version`` as ``name==version``, or ``name`` + version when the version starts with an
    operator (``<``, ``>`` or ``=``)."""
    lines = [
        f"monai=={metadata['monai_version']}",
        f"torch=={metadata['pytorch_version']}",
        f"numpy=={metadata['numpy_version']}",
    ]
    for key in ("optional_packages_version", "required_packages_version"):
        for name, version in metadata.get(key, {}).items():
            version = version.strip()
            lines.append(f"{name}{version}" if version[0] in "<>=" else f"{name}=={version}")
    return lines


def test_required_packages_are_published_ranges_without_monai_ilm(quick_run, tmp_path):
    exported = export(quick_run[1], tmp_path / "bundle")
    metadata = json.loads((exported / "configs" / "metadata.json").read_text())
    requirements = [Requirement(line) for line in zoo_requirements(metadata)]
    assert not [r for r in requirements if r.name.replace("_", "-").lower() == "monai-ilm"]
    for requirement in requirements[3:]:  # the bundle's own packages: lower bounds, never this machine's pins
        assert [s.operator for s in requirement.specifier] == [">="], requirement
    inference = (exported / "configs" / "inference.json").read_text()
    assert "monai_ilm" not in inference and "scripts." not in inference


def readme_command(readme: str, marker: str) -> str:
    """The one command line of the README's bash block that contains ``marker``."""
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    found = [line for line in block.splitlines() if line.startswith("python -m monai.bundle") and marker in line]
    assert len(found) == 1, found
    return found[0]


def replace_option(arguments: list[str], option: str, value: str) -> list[str]:
    index = arguments.index(option)
    return [*arguments[: index + 1], value, *arguments[index + 2 :]]


@pytest.mark.slow
def test_the_readme_evaluation_command_works_as_written_in_the_bundle_folder(quick_run, tmp_path):
    """The defect: ``pretrained_checkpoint: runs/pretrain/mse_seed0/models/model.pt does not exist``."""
    data, run = quick_run
    exported = export(run, tmp_path / "bundle")
    command = readme_command((exported / "docs" / "README.md").read_text(), "--protocol linear")
    arguments = replace_option(shlex.split(command), "--dataset_dir", str(data))  # the tiny data set
    arguments += ["--evaluation_epochs", "1", "--n_resamples", "20", "--num_workers", "0"]  # quick settings
    assert arguments[:3] == ["python", "-m", "monai.bundle"]
    done = subprocess.run(
        [sys.executable, *arguments[1:]],
        cwd=exported,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list((exported / "runs" / "results").glob("*.csv"))
    assert rows, sorted(str(p.relative_to(exported)) for p in (exported / "runs").rglob("*"))
    assert "models/model.pt" in "".join(p.read_text() for p in rows)  # the bundle's own weights


def reference_embeddings(exported: Path, images: list[str]) -> np.ndarray:
    """The pooled representation of ``images`` through monai-ilm's own evaluation preprocessing and eager network."""
    from monai_ilm.networks import MoCoQueryNetwork, resnet_encoder
    from monai_ilm.transforms import eval_transforms

    network = MoCoQueryNetwork(resnet_encoder("resnet18"), 128, "linear").eval()
    network.load_state_dict(torch.load(exported / "models" / "model.pt", map_location="cpu", weights_only=True))
    transform = eval_transforms("nih", image_size=64, channels=3)
    batch = torch.stack([transform({"image": path})["image"] for path in images])
    with torch.no_grad():
        return network(batch).numpy()


def clean_environment(root: Path) -> Path:
    """A virtual environment without system site-packages that sees this interpreter's packages through a ``.pth``
    file of plain paths (a path line does not process the ``.pth`` files inside it, so the editable monai-ilm
    install stays out); returns its python."""
    venv.create(root, with_pip=False, system_site_packages=False)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "outside_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.mark.slow
def test_exported_inference_installs_and_runs_without_monai_ilm(quick_run, tmp_path):
    data, run = quick_run
    exported = export(run, tmp_path / "bundle")
    python = clean_environment(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    probe = subprocess.run(
        [str(python), "-c", "import monai_ilm"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert probe.returncode != 0 and "No module named 'monai_ilm'" in probe.stderr
    metadata = json.loads((exported / "configs" / "metadata.json").read_text())
    lines = zoo_requirements(metadata)
    # monai-ilm's metadata is visible here (its editable install), so pip alone would not catch it: check by name
    assert not [line for line in lines if Requirement(line).name.lower().replace("_", "-") == "monai-ilm"]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "-r", str(requirements)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    images = sorted(str(p) for p in data.rglob("*.png"))[:6]
    few = tmp_path / "images"
    few.mkdir()
    for index, path in enumerate(images):
        shutil.copy(path, few / f"{index}.png")
    command = ["-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--dataset_dir", str(few)]
    done = subprocess.run(
        [str(python), *command, "--output_dir", str(tmp_path / "eval")],
        capture_output=True,
        text=True,
        cwd=exported,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line.split(",") for line in (tmp_path / "eval" / "embeddings.csv").read_text().splitlines()]
    paths = [line[0] for line in lines]
    assert sorted(paths) == sorted(str(few / f"{i}.png") for i in range(len(images)))
    embeddings = np.array([[float(v) for v in line[1:]] for line in lines])
    # monai-ilm's loader, channels, resize and crop vs. the MONAI-only ones: float32 rounding of the same operations
    np.testing.assert_allclose(embeddings, reference_embeddings(exported, paths), rtol=1e-4, atol=1e-5)
