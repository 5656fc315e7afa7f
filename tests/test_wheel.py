"""The package works when installed from a wheel: bundles ship as package data and every command finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "demo_output", "runs", ".venv", ".pytest_cache", ".hypothesis"
)


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo_from_an_empty_directory(tmp_path):
    # a clean copy, so the build leaves nothing in the working tree
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=IGNORE)
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path / "dist"),
        str(source),
    ]
    build = subprocess.run(command, capture_output=True, text=True, check=False)
    if build.returncode and "No module named pip" in build.stderr:
        pytest.skip("pip is not available")
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("monai_ilm-*.whl"))
    try:  # --system-site-packages: torch, MONAI and the rest are reused, so nothing is downloaded
        venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"venv with pip is not available: {error}")
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    empty = tmp_path / "empty"
    empty.mkdir()

    def run(*args: str) -> str:
        result = subprocess.run([python, *args], cwd=empty, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    where = run("-c", "import monai_ilm, monai_ilm.experiment as e; print(monai_ilm.__file__); print(e.bundles_root())")
    package, bundles = where.split()[-2:]
    assert str(tmp_path / "venv") in package and bundles == str(Path(package).parent / "bundles")
    run("-m", "monai_ilm", "bundle", "copy", "nih_chestxray_ilm", "mine")
    assert (empty / "mine" / "configs" / "metadata.json").is_file() and (empty / "mine" / "LICENSE").is_file()
    # a reduced demo: one method, one label fraction, small images
    output = run(
        "-m",
        "monai_ilm",
        "demo",
        "--methods",
        "mse",
        "--fractions",
        "1.0",
        "--n_patients",
        "16",
        "--image_size",
        "64",
        "--output_dir",
        "out",
    )
    assert "Done in" in output and list((empty / "out" / "results").glob("*.csv"))
    commands = run(
        "-m",
        "monai_ilm",
        "experiment",
        "--bundle",
        "nih_chestxray_ilm",
        "--dataset_dir",
        "out/sample_data/nih",
        "--methods",
        "mse",
        "--fractions",
        "1.0",
        "--print_commands",
    )
    assert f"{bundles}/nih_chestxray_ilm/configs/pretrain.json" in commands
