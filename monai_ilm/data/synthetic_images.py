"""Synthetic images with class-dependent structure: chest X-rays, H&E patches and fundus photographs.

The pictures behind :mod:`monai_ilm.data.synthetic`'s look-alike data sets. Each draws, from a
``numpy`` generator, an image in [0, 1] whose class can be read from its structure, so an encoder
can learn it and downstream evaluation beats chance:

* chest X-ray: a grey chest (body and two darker lungs); each of the 14 NIH findings adds a bright
  blob at its own position, so the multi-hot label is readable from where the blobs are;
* H&E patch: pink texture with purple nuclei; IDC-positive patches have many more, larger nuclei
  on a darker stroma;
* fundus photograph: an orange disc with an optic disc on the eye's side; the number of red lesions
  (and yellow exudates from grade 2) grows with the DR grade.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_DR_LESIONS_PER_GRADE = (0, 2, 6, 12, 20)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): ``(rows, cols)`` broadcastable to ``(size, size)``."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return coords[:, None], coords[None, :]


def blob(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A Gaussian bump of peak 1 at ``centre`` (row, col in [0, 1]) with std ``radius`` (image fraction)."""
    rows, cols = grid(size)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2.0 * radius**2))


def ellipse(size: int, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """A filled ellipse (1 inside, 0 outside) at ``centre`` with half-axes ``radii`` (image fractions)."""
    rows, cols = grid(size)
    return (((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1.0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int = 6) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled bilinearly."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def to_uint(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """``image`` in [0, 1], clipped and scaled to unsigned integers of ``bit_depth`` (8 or 16) bits."""
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(image, 0.0, 1.0) * peak).astype(dtype)


def _finding_centres() -> list[tuple[float, float]]:
    """One blob position per NIH finding, spread over the chest on a 4 x 4 grid (14 of 16 cells)."""
    cells = [(0.2 + 0.2 * r, 0.2 + 0.2 * c) for r in range(4) for c in range(4)]
    return cells[1:15]


def nih_image(findings: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic chest X-ray in [0, 1] with one bright blob per present finding.

    Args:
        findings: 14 booleans in the :data:`~monai_ilm.data.nih.NIH_FINDINGS` order.
        image_size: the side in pixels.
        rng: the random generator.
    """
    body = ellipse(image_size, (0.55, 0.5), (0.5, 0.42))
    lungs = ellipse(image_size, (0.5, 0.3), (0.3, 0.14)) + ellipse(image_size, (0.5, 0.7), (0.3, 0.14))
    image = 0.1 + 0.45 * body - 0.25 * lungs + 0.05 * smooth_noise(rng, image_size)
    for centre, present in zip(_finding_centres(), findings):
        if present:
            jitter = rng.normal(0.0, 0.02, size=2)
            image += 0.4 * blob(image_size, (centre[0] + jitter[0], centre[1] + jitter[1]), 0.05)
    return image + 0.02 * rng.standard_normal((image_size, image_size)).astype(np.float32)


def idc_patch(positive: bool, patch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic H&E-like RGB patch in [0, 1]; IDC-positive patches hold many more, larger nuclei."""
    stroma = np.array([0.92, 0.72, 0.85], dtype=np.float32) - (0.12 if positive else 0.0)
    image = stroma[None, None, :] + 0.04 * smooth_noise(rng, patch_size, 5)[..., None]
    count = int(rng.integers(22, 34)) if positive else int(rng.integers(3, 9))
    radius = 0.07 if positive else 0.045
    nuclei = np.zeros((patch_size, patch_size), dtype=np.float32)
    for centre in rng.random((count, 2)):
        nuclei = np.maximum(nuclei, blob(patch_size, (centre[0], centre[1]), radius * rng.uniform(0.7, 1.3)))
    purple = np.array([0.42, 0.22, 0.58], dtype=np.float32)
    image = image * (1 - nuclei[..., None]) + purple[None, None, :] * nuclei[..., None]
    return image + 0.02 * rng.standard_normal(image.shape).astype(np.float32)


def fundus_image(grade: int, eye: str, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic RGB fundus photograph in [0, 1]; lesions (and exudates from grade 2) grow with the grade."""
    disc = ellipse(image_size, (0.5, 0.5), (0.46, 0.46))
    rows, cols = grid(image_size)
    vignette = 1.0 - 0.6 * ((rows - 0.5) ** 2 + (cols - 0.5) ** 2) / 0.21
    base = np.array([0.78, 0.36, 0.16], dtype=np.float32)
    image = (base[None, None, :] * (vignette * disc)[..., None]) * (1 + 0.05 * smooth_noise(rng, image_size)[..., None])
    optic_col = 0.3 if eye == "left" else 0.7
    image += np.array([0.2, 0.35, 0.25], dtype=np.float32) * blob(image_size, (0.5, optic_col), 0.05)[..., None]
    for _ in range(_DR_LESIONS_PER_GRADE[grade]):
        angle, radius = rng.uniform(0, 2 * np.pi), 0.35 * np.sqrt(rng.random())
        lesion = blob(image_size, (0.5 + radius * np.sin(angle), 0.5 + radius * np.cos(angle)), 0.025)
        image -= np.array([0.05, 0.3, 0.15], dtype=np.float32) * lesion[..., None] * disc[..., None]
    for _ in range(3 * max(0, grade - 1)):
        angle, radius = rng.uniform(0, 2 * np.pi), 0.3 * np.sqrt(rng.random())
        exudate = blob(image_size, (0.5 + radius * np.sin(angle), 0.5 + radius * np.cos(angle)), 0.03)
        image += np.array([0.2, 0.45, 0.1], dtype=np.float32) * exudate[..., None] * disc[..., None]
    return image * disc[..., None]
