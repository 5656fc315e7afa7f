"""Helpers shared by the data and transform tests: the real sample data (skipping without it) and small datalists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def shared_path(*parts: str) -> Path:
    """The path of a real sample file under ``../shared/data``, skipping the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data '{path}' is not available (it lives in ../shared/data beside the repository)")
    return path


def single_label_rows(n_patients: int = 200, seed: int = 0, num_classes: int = 3) -> list[dict]:
    """Rows of patients with 1-5 images each; class 2 is rare (about 4 % of patients)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = int(rng.choice(num_classes, p=[0.7, 0.26, 0.04][:num_classes] if num_classes == 3 else None))
        for k in range(int(rng.integers(1, 6))):
            rows.append({"image": f"p{p}_{k}.png", "label": label, "patient_id": f"p{p}"})
    return rows


def multi_label_rows(n_patients: int = 300, seed: int = 1) -> list[dict]:
    """Multi-hot rows with 5 findings of very different prevalence (the last is carried by 3 patients)."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.3, 0.15, 0.08, 0.03, 0.0])
    rows = []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 4))):
            label = (rng.random(5) < prevalence).astype(float)
            label[4] = float(p in (7, 150, 299))
            rows.append({"image": f"{p}_{k}.png", "label": label.tolist(), "patient_id": str(p)})
    return rows


def patients_of(rows: list[dict]) -> set[str]:
    """The patient ids of the rows."""
    return {r["patient_id"] for r in rows}


def images_of(rows: list[dict]) -> set[str]:
    """The image names of the rows."""
    return {r["image"] for r in rows}
