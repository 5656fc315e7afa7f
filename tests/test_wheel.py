"""The package works when installed from a wheel, run from an empty directory: the shipped bundles, the demo, the
dashboard (served, and rendered in headless Chromium where it is installed), the export and the cited docs.

The wheel goes into a fresh virtual environment without system site packages; a ``.pth`` file adds the running
interpreter's site-packages (torch, MONAI, Streamlit, ...), so nothing is downloaded. Path lines of a ``.pth`` do
not process the ``.pth`` files of the added directories, so an editable install of monai-ilm there stays invisible
and every ``monai_ilm`` and ``dashboard`` import comes from the wheel (checked). This holds inside a virtualenv as
outside one, where ``venv.create(system_site_packages=True)`` would give the base interpreter's packages instead.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest

from tests.dashboard.test_browser import _free_port, driver  # noqa: F401 - driver: the browser test's fixture
from tests.helpers import serve_until_healthy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "demo_output", "runs", ".venv", ".pytest_cache", ".hypothesis"
)
# Streamlit settings for a test server: local only, no usage statistics, no file watcher
STREAMLIT_ENV = {
    "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
}
SERVER_TIMEOUT = 60.0
COMMAND_TIMEOUT = 600.0  # one command of the installed package (the reduced demo takes about a minute)
# a relative Markdown link target: not a URL, not an in-page anchor
_LINK = re.compile(r"\]\((?![a-z]+:|#)([^)\s#]+)")


def _outer_site_packages() -> list[str]:
    """Where the running interpreter's packages are: its site-packages, and the user's when that is enabled."""
    paths = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.append(site.getusersitepackages())
    return paths


class Installed:
    """A virtual environment holding the wheel, and an empty working directory to run it from."""

    def __init__(self, root: Path) -> None:
        self.root, self.python = root / "venv", str(root / "venv" / "bin" / "python")
        self.empty = root / "empty"

    def run(self, *args: str) -> str:
        """``python *args`` in the empty directory; its stdout and stderr, after checking it succeeded."""
        result = subprocess.run(
            [self.python, *args], cwd=self.empty, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from a clean copy of the repository, installed into a fresh virtual environment."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"  # a clean copy, so the build leaves nothing in the working tree
    shutil.copytree(REPO, source, ignore=IGNORE)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    build = subprocess.run([*command, "-w", str(root / "dist"), str(source)], capture_output=True, text=True)
    if build.returncode and "No module named pip" in build.stderr:
        pytest.skip("pip is not available")
    assert build.returncode == 0, build.stderr
    wheel = next((root / "dist").glob("monai_ilm-*.whl"))
    env = Installed(root)
    try:  # ensurepip installs pip from the interpreter's own copy: nothing is downloaded
        venv.create(env.root, system_site_packages=False, with_pip=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"venv with pip is not available: {error}")
    purelib = subprocess.run(
        [env.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "outer_site_packages.pth").write_text("".join(f"{p}\n" for p in _outer_site_packages()))
    install = subprocess.run(
        [env.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    env.empty.mkdir()
    return env


@pytest.fixture(scope="module")
def demo(installed: Installed) -> str:
    """A reduced demo from the wheel (one method, one label fraction, small images) into ``out``; its output."""
    return installed.run(
        *("-m", "monai_ilm", "demo", "--methods", "mse", "--fractions", "1.0"),
        *("--n_patients", "16", "--image_size", "64", "--output_dir", "out"),
    )


@pytest.fixture(scope="module")
def served(installed: Installed, demo: str, tmp_path_factory: pytest.TempPathFactory):
    """``python -m monai_ilm dashboard --results out/results`` from the wheel on a free port; stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("dashboard") / "server.log"
    command = [installed.python, "-m", "monai_ilm", "dashboard", "--results", "out/results"]
    env = {k: v for k, v in os.environ.items() if k != "MONAI_ILM_RESULTS"} | STREAMLIT_ENV
    url = f"http://127.0.0.1:{port}"
    yield from serve_until_healthy(
        [*command, "--port", str(port), "--headless"], installed.empty, env, log, url, SERVER_TIMEOUT
    )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read().decode(errors="replace")


def test_wheel_runs_the_demo_bundles_and_export_from_an_empty_directory(installed: Installed, demo: str) -> None:
    where = installed.run(
        "-c",
        "import dashboard, monai_ilm, monai_ilm.experiment as e; from monai_ilm.cli import dashboard_app; "
        "print(monai_ilm.__file__, dashboard.__file__, e.bundles_root(), dashboard_app())",
    )
    package, board, bundles, app = (Path(p) for p in where.split()[-4:])
    # the wheel's code, not the checkout's (an editable install in the outer environment stays invisible)
    assert installed.root in package.parents and installed.root in board.parents
    assert bundles == package.parent / "bundles" and app == board.parent / "app.py" and app.is_file()
    assert (board.parent / "paper_results.json").is_file() and (board.parent / "views" / "overview.py").is_file()
    # the cited docs ship, and a bundle's docs reach them as ../../../docs in this layout as in a checkout
    bundle_docs = bundles / "nih_chestxray_ilm" / "docs"
    for name in ("method.md", "results.md"):
        assert (package.parent / "docs" / name).is_file() and (bundle_docs / "../../../docs" / name).is_file()
    shipped = [*bundles.glob("*/docs/*.md"), *(package.parent / "docs").glob("*.md"), board.parent / "README.md"]
    broken = [
        f"{md}: {link}" for md in shipped for link in _LINK.findall(md.read_text()) if not (md.parent / link).exists()
    ]
    assert broken == []

    installed.run("-m", "monai_ilm", "bundle", "copy", "nih_chestxray_ilm", "mine")
    mine = installed.empty / "mine"
    assert (mine / "configs" / "metadata.json").is_file() and (mine / "LICENSE").is_file()

    assert "Done in" in demo and list((installed.empty / "out" / "results").glob("*.csv"))
    assert "Dashboard: python -m monai_ilm dashboard --results " in demo  # the command that works installed
    # the console script reaches the same command (its checks run before any server starts)
    script = installed.root / "bin" / "monai-ilm"
    refused = subprocess.run(
        [str(script), "dashboard", "--results", "no_results"], cwd=installed.empty, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "--results: expected a results directory" in refused.stderr
    commands = installed.run(
        *("-m", "monai_ilm", "experiment", "--bundle", "nih_chestxray_ilm", "--dataset_dir", "out/sample_data/nih"),
        *("--methods", "mse", "--fractions", "1.0", "--print_commands"),
    )
    assert f"{bundles}/nih_chestxray_ilm/configs/pretrain.json" in commands

    installed.run(
        *("-m", "monai_ilm", "export", "--bundle", "nih_chestxray_ilm"),
        *("--run", "out/pretrain/mse_seed0", "--to", "exported"),
    )
    exported = installed.empty / "exported"
    assert (exported / "models" / "model.pt").is_file() and (exported / "configs" / "metadata.json").is_file()


def test_wheel_serves_the_dashboard_from_an_empty_directory(served: str) -> None:
    assert "<html" in _get(served).lower()
    assert _get(f"{served}/_stcore/health").strip() == "ok"


@pytest.mark.browser
def test_wheel_dashboard_renders_the_demo_results_in_chromium(served: str, driver) -> None:  # noqa: F811 - fixture
    """The demo's own results on screen, read from out/results: the paper's tables, and the demo's method."""
    from selenium.webdriver.common.by import By

    from dashboard.overview import TABLES
    from tests.dashboard.test_browser import DEMO_PAGES, _page_errors, _wait_for_page

    for url_path in ("", "label-efficiency"):
        driver.get(f"{served}/{url_path}")
        _wait_for_page(driver, *DEMO_PAGES[url_path])
        assert _page_errors(driver, served) == []
        page = driver.find_element(By.TAG_NAME, "main").text
        assert "does not exist" not in page and "No results" not in page
        if url_path == "":  # every table titled; those the reduced demo fills (no CKA: 100 % labels only) drawn
            assert all(spec.title in page for spec in TABLES)
            assert not any(f"(protocol '{p}')" in page for p in ("linear", "finetune", "probe"))
            assert len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')) >= 3
        else:
            assert "MoCo + MSE" in page
