"""Small synthetic data sets written in the real on-disk layouts, for demos and tests.

The real data sets (NIH 112k X-rays, 277k IDC patches, 88k EyePACS photographs) are too large to
ship, so these writers lay out look-alikes exactly as the readers expect them: file names, folders,
metadata tables, split lists and the way patients, follow-up images and labels relate (chronic NIH
findings, both eyes of an EyePACS patient with correlated grades, several IDC patches per patient).
The pictures themselves come from :mod:`monai_ilm.data.synthetic_images`; NIfTI volumes (class 1
holds a bright sphere) and MedMNIST images (the blob's position gives the class) are drawn here.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: the same arguments write the
same files. A few hundred 64-128 px images take a few seconds. Command line::

    python -m monai_ilm.data.synthetic --layout nih --output_dir sample_data/nih
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monai_ilm.data.files import PathLike
from monai_ilm.data.nih import NIH_FINDINGS, NO_FINDING
from monai_ilm.data.splits import patient_split
from monai_ilm.data.synthetic_images import blob, fundus_image, idc_patch, nih_image, smooth_noise, to_uint

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
"""The header line of ``Data_Entry_2017_v2020.csv``, verbatim (its bracketed names hold commas)."""

# Per-image probability of each finding: roughly the real prevalence, raised so that tiny samples
# still hold every finding.
_NIH_PREVALENCE = np.clip(
    np.array([0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042, 0.021, 0.022, 0.015, 0.030, 0.002]) * 1.5,
    0.06,
    0.3,
)
_DR_GRADE_PROBABILITIES = np.array([0.55, 0.10, 0.20, 0.08, 0.07])


def _save_png(path: Path, image: np.ndarray, bit_depth: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint(image, bit_depth)).save(path)


def _nih_findings(rng: np.random.Generator, n_patients: int, images_per_patient: int) -> np.ndarray:
    """(patients, images, 14) findings: chronic per-patient findings that mostly persist, plus new ones.

    Every finding is made chronic in at least 5 patients (when there are 5), so that even a small
    sample can be split by patient with every finding in train, val and test.
    """
    chronic = rng.random((n_patients, 1, len(NIH_FINDINGS))) < _NIH_PREVALENCE
    for finding in range(len(NIH_FINDINGS)):
        lacking = min(5, n_patients) - int(chronic[:, 0, finding].sum())
        if lacking > 0:
            candidates = np.flatnonzero(~chronic[:, 0, finding])
            chronic[rng.choice(candidates, size=lacking, replace=False), 0, finding] = True
    persists = rng.random((n_patients, images_per_patient, len(NIH_FINDINGS))) < 0.8
    persists[:, 0] = True  # the first image shows every chronic finding
    new = rng.random((n_patients, images_per_patient, len(NIH_FINDINGS))) < 0.2 * _NIH_PREVALENCE
    return (chronic & persists) | new


def _write_lines(path: Path, lines: Sequence[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(line + newline for line in lines))


def make_nih_sample(
    root: PathLike,
    n_patients: int = 40,
    images_per_patient: int = 3,
    image_size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.2,
    images_per_folder: int = 50,
    bit_depth: int = 8,
    chexnet_lists: bool = False,
) -> Path:
    """Write a small NIH ChestX-ray14 look-alike in the published layout.

    Writes ``Data_Entry_2017_v2020.csv`` (the real header and columns), the PNGs in
    ``images_001/images/``, ``images_002/images/``, ... (``images_per_folder`` each), and the official
    patient-level ``train_val_list.txt`` / ``test_list.txt``. With ``chexnet_lists`` it also writes the
    15-column CheXNet lists ``labels/{train,val,test}_list.txt`` (70/10/20 by patient, CRLF line ends).

    Args:
        root: the output folder (created).
        n_patients: number of patients (patient ids 1..n).
        images_per_patient: follow-up images per patient.
        image_size: image side in pixels (the real images are 1024).
        seed: the random seed.
        test_fraction: fraction of patients in ``test_list.txt``.
        images_per_folder: images per ``images_XXX`` folder.
        bit_depth: 8 (like the real PNGs) or 16.
        chexnet_lists: also write the CheXNet split lists.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: for non-positive counts or sizes, or a bit depth other than 8 or 16.
    """
    _check_positive(
        n_patients=n_patients,
        images_per_patient=images_per_patient,
        image_size=image_size,
        images_per_folder=images_per_folder,
    )
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth: expected 8 or 16, got {bit_depth}.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    findings = _nih_findings(rng, n_patients, images_per_patient)
    rows, datalist = [], []
    for p in range(n_patients):
        age, gender = int(rng.integers(20, 80)), ("M", "F")[int(rng.integers(2))]
        for k in range(images_per_patient):
            name = f"{p + 1:08d}_{k:03d}.png"
            index = p * images_per_patient + k
            folder = root / f"images_{index // images_per_folder + 1:03d}" / "images"
            _save_png(folder / name, nih_image(findings[p, k], image_size, rng), bit_depth)
            names = [f for f, present in zip(NIH_FINDINGS, findings[p, k]) if present] or [NO_FINDING]
            view = ("PA", "AP")[int(rng.random() < 0.4)]
            rows.append(
                f"{name},{'|'.join(names)},{k},{p + 1},{age + k},{gender},{view},{image_size},{image_size},0.143,0.143"
            )
            datalist.append(
                {"image_name": name, "patient_id": str(p + 1), "label": findings[p, k].astype(float).tolist()}
            )
    _write_lines(root / "Data_Entry_2017_v2020.csv", [NIH_HEADER] + rows)
    train_val, test = patient_split(
        datalist,
        (1.0 - test_fraction, test_fraction),
        seed=seed,
        split_names=("train_val", "test"),
        require_all_classes=False,
    )
    _write_lines(root / "train_val_list.txt", sorted(r["image_name"] for r in train_val))
    _write_lines(root / "test_list.txt", sorted(r["image_name"] for r in test))
    if chexnet_lists:
        for split, part in zip(("train", "val", "test"), patient_split(datalist, seed=seed, require_all_classes=False)):
            lines = [" ".join([r["image_name"]] + [str(int(v)) for v in r["label"]]) for r in part]
            _write_lines(root / "labels" / f"{split}_list.txt", lines, newline="\r\n")
    return root


def make_idc_sample(
    root: PathLike,
    n_patients: int = 8,
    patches_per_patient: int = 20,
    patch_size: int = 50,
    seed: int = 0,
    write_split_csvs: bool = False,
) -> Path:
    """Write a small Kaggle IDC look-alike: ``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<c>.png``.

    Each patient gets a random share of IDC-positive patches (10-60 %, at least one of each class)
    at distinct grid positions, like the real tiles. With ``write_split_csvs`` the reference's
    ``{train,val,test}_split.csv`` (``img_path,labels``; 70/10/20 by patient) are written too.

    Args:
        root: the output folder (created).
        n_patients: number of patient folders (ids from 10253).
        patches_per_patient: patches per patient (at least 2).
        patch_size: patch side in pixels (50 in the real data).
        seed: the random seed.
        write_split_csvs: also write split CSVs in ``root``.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: for non-positive counts or sizes, or fewer than 2 patches per patient.
    """
    _check_positive(n_patients=n_patients, patches_per_patient=patches_per_patient, patch_size=patch_size)
    if patches_per_patient < 2:
        raise ValueError(f"patches_per_patient: expected at least 2 (one per class), got {patches_per_patient}.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    datalist = []
    for p in range(n_patients):
        patient = str(10253 + p)
        positives = int(np.clip(round(rng.uniform(0.1, 0.6) * patches_per_patient), 1, patches_per_patient - 1))
        labels = np.r_[np.zeros(patches_per_patient - positives, int), np.ones(positives, int)]
        cells = rng.choice(40 * 40, size=patches_per_patient, replace=False)
        for label, cell in zip(labels, cells):
            x, y = 1 + 50 * int(cell % 40), 1 + 50 * int(cell // 40)
            relative = f"{patient}/{label}/{patient}_idx5_x{x}_y{y}_class{label}.png"
            _save_png(root / relative, idc_patch(bool(label), patch_size, rng))
            datalist.append({"img_path": relative, "label": int(label), "patient_id": patient})
    if write_split_csvs:
        for split, part in zip(("train", "val", "test"), patient_split(datalist, seed=seed, require_all_classes=False)):
            _write_lines(
                root / f"{split}_split.csv", ["img_path,labels"] + [f"{r['img_path']},{r['label']}" for r in part]
            )
    return root


def make_dr_sample(
    root: PathLike,
    n_patients: int = 30,
    image_size: int = 64,
    seed: int = 0,
    layout: str = "kaggle",
    jama16_grade_folders: bool = False,
    test_fraction: float = 0.2,
) -> Path:
    """Write a small EyePACS look-alike, both eyes per patient, with correlated grades.

    ``layout="kaggle"`` writes ``trainLabels.csv`` (``image,level``) and ``train/<patient>_<eye>.jpeg``
    as Kaggle ships them. ``layout="jama16"`` writes the pre-processed ``<split>/<class>/<image>.jpg``
    layout with ``train/`` and ``test/`` only (the pre-processing writes no validation folder, D19);
    the class folders are the binary referable label (``bin2``) or, with ``jama16_grade_folders``,
    the 0-4 grade.

    Args:
        root: the output folder (created).
        n_patients: number of patients (two images each).
        image_size: image side in pixels (299 after jama16 pre-processing).
        seed: the random seed.
        layout: ``"kaggle"`` or ``"jama16"``.
        jama16_grade_folders: with ``"jama16"``, name class folders by grade instead of referable label.
        test_fraction: with ``"jama16"``, fraction of patients in ``test/``.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: for an unknown layout or non-positive counts or sizes.
    """
    _check_positive(n_patients=n_patients, image_size=image_size)
    if layout not in ("kaggle", "jama16"):
        raise ValueError(f"layout: expected 'kaggle' or 'jama16', got '{layout}'.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    patients = 10 + 3 * np.arange(n_patients)  # Kaggle's ids are sparse numbers such as 10, 13, 15
    test_patients = set(
        rng.choice(patients, size=max(1, int(round(test_fraction * n_patients))), replace=False).tolist()
    )
    rows = []
    for patient in patients.tolist():
        base_grade = int(rng.choice(5, p=_DR_GRADE_PROBABILITIES))
        for eye in ("left", "right"):
            grade = int(np.clip(base_grade + (rng.random() < 0.2) * rng.choice([-1, 1]), 0, 4))
            name = f"{patient}_{eye}"
            image = Image.fromarray(to_uint(fundus_image(grade, eye, image_size, rng), 8))
            if layout == "kaggle":
                path = root / "train" / f"{name}.jpeg"
            else:
                split = "test" if patient in test_patients else "train"
                folder = str(grade) if jama16_grade_folders else str(int(grade >= 2))
                path = root / split / folder / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=95)
            rows.append(f"{name},{grade}")
    if layout == "kaggle":
        _write_lines(root / "trainLabels.csv", ["image,level"] + rows)
    return root


def make_nifti_sample(
    root: PathLike,
    n_patients: int = 8,
    volume_size: int = 16,
    seed: int = 0,
) -> Path:
    """Write NIfTI volumes in class folders ``<root>/<0|1>/patient<k>.nii.gz``; class 1 holds a bright sphere.

    Args:
        root: the output folder (created).
        n_patients: number of volumes (one per patient, classes alternate).
        volume_size: the cube side in voxels.
        seed: the random seed.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: for non-positive counts or sizes.
    """
    import nibabel

    _check_positive(n_patients=n_patients, volume_size=volume_size)
    root = Path(root)
    rng = np.random.default_rng(seed)
    axis = (np.arange(volume_size, dtype=np.float32) + 0.5) / volume_size
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    for k in range(n_patients):
        label = k % 2
        volume = 100.0 + 20.0 * rng.standard_normal((volume_size,) * 3).astype(np.float32)
        if label:
            centre = rng.uniform(0.3, 0.7, size=3)
            volume += 300.0 * (((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < 0.2**2)
        path = root / str(label) / f"patient{k:03d}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), affine=np.eye(4)), str(path))
    return root


def make_medmnist_sample(
    path: PathLike,
    split_sizes: Sequence[int] = (40, 10, 20),
    image_size: int = 28,
    channels: int = 1,
    num_classes: int = 2,
    flat_labels: bool = False,
    seed: int = 0,
) -> Path:
    """Write a MedMNIST-style ``.npz``: ``{split}_images`` uint8 and ``{split}_labels`` of shape (N, 1) or (N,).

    The class decides where a bright blob sits (one position per class on a circle).

    Args:
        path: the ``.npz`` file to write (its folder is created).
        split_sizes: images in train, val and test.
        image_size: image side in pixels.
        channels: 1 (``(N, H, W)`` images) or 3 (``(N, H, W, 3)``).
        num_classes: number of classes.
        flat_labels: store labels as ``(N,)`` (like BreastMNIST) instead of ``(N, 1)``.
        seed: the random seed.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: for channels other than 1 or 3, or non-positive sizes.
    """
    _check_positive(
        image_size=image_size, num_classes=num_classes, **{f"split_sizes[{i}]": s for i, s in enumerate(split_sizes)}
    )
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}.")
    path = Path(path)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("train", "val", "test"), split_sizes):
        labels = np.arange(size) % num_classes
        rng.shuffle(labels)
        images = []
        for label in labels:
            angle = 2 * np.pi * label / num_classes
            centre = (0.5 + 0.28 * np.sin(angle), 0.5 + 0.28 * np.cos(angle))
            image = 0.2 + 0.1 * smooth_noise(rng, image_size, 4) + 0.6 * blob(image_size, centre, 0.09)
            image = to_uint(image, 8)
            images.append(np.repeat(image[..., None], 3, axis=-1) if channels == 3 else image)
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = labels.astype(np.uint8) if flat_labels else labels.astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _ball_volumes(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """uint8 volumes ``(N, size, size, size)``: a bright ball on noise, in one half of the volume for class 1 and
    in the other for class 0."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    volumes = []
    for label in labels:
        centre = (rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), 0.3 + 0.4 * label)
        ball = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * 0.12**2))
        noise = rng.standard_normal((size,) * 3).astype(np.float32)
        volumes.append(to_uint(0.2 + 0.05 * noise + 0.6 * ball, 8))
    return np.stack(volumes)


def make_medmnist3d_sample(
    path: PathLike,
    split_sizes: Sequence[int] = (24, 8, 12),
    volume_size: int = 16,
    seed: int = 0,
) -> Path:
    """Write a MedMNIST 3D-style ``.npz`` (as AdrenalMNIST3D): ``{split}_images`` uint8 ``(N, D, H, W)``, binary
    ``{split}_labels`` ``(N, 1)``.

    Args:
        path: the ``.npz`` file to write (its folder is created).
        split_sizes: volumes in train, val and test.
        volume_size: the cube side in voxels.
        seed: the random seed.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: for non-positive sizes.
    """
    _check_positive(volume_size=volume_size, **{f"split_sizes[{i}]": s for i, s in enumerate(split_sizes)})
    path = Path(path)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("train", "val", "test"), split_sizes):
        labels = np.arange(size) % 2
        rng.shuffle(labels)
        arrays[f"{split}_images"] = _ball_volumes(rng, labels, volume_size)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def make_volume_csv_sample(
    root: PathLike,
    n_patients: int = 24,
    volumes_per_patient: int = 2,
    volume_size: int = 16,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
) -> Path:
    """Write the NIfTI layout of the volume bundle: ``<root>/volumes/p<k>_<j>.nii.gz`` and ``<root>/labels.csv``
    (``image,label,patient``), one label per patient.

    Args:
        root: the output folder (created).
        n_patients: number of patients (classes alternate).
        volumes_per_patient: volumes of each patient.
        volume_size: the cube side in voxels.
        spacing: the voxel spacing in mm written to each header (the affine's diagonal).
        seed: the random seed.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: for non-positive counts or sizes.
    """
    import nibabel

    _check_positive(n_patients=n_patients, volumes_per_patient=volumes_per_patient, volume_size=volume_size)
    root = Path(root)
    (root / "volumes").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_patients) % 2, volumes_per_patient)
    volumes = _ball_volumes(rng, labels, volume_size)
    affine = np.diag([*map(float, spacing), 1.0])
    lines = ["image,label,patient"]
    for index, (volume, label) in enumerate(zip(volumes, labels)):
        patient, visit = divmod(index, volumes_per_patient)
        name = f"volumes/p{patient:03d}_{visit}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume, affine), str(root / name))
        lines.append(f"{name},{label},p{patient:03d}")
    _write_lines(root / "labels.csv", lines)
    return root


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value}.")


LAYOUT_WRITERS = {
    "nih": make_nih_sample,
    "idc": make_idc_sample,
    "dr": make_dr_sample,
    "dr-jama16": lambda root, **kw: make_dr_sample(root, layout="jama16", **kw),
    "nifti": make_nifti_sample,
}


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: write one sample data set (``python -m monai_ilm.data.synthetic --help``)."""
    parser = argparse.ArgumentParser(description="Write a small synthetic data set in a real on-disk layout.")
    parser.add_argument("--layout", required=True, choices=[*LAYOUT_WRITERS, "medmnist"])
    parser.add_argument("--output_dir", required=True, help="output folder (for medmnist: folder of sample.npz)")
    parser.add_argument("--n_patients", type=int, default=None, help="number of patients (layout default if omitted)")
    parser.add_argument("--image_size", type=int, default=None, help="image side in pixels (layout default if omitted)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.layout == "medmnist":
        kwargs = {"image_size": args.image_size} if args.image_size else {}
        written = make_medmnist_sample(Path(args.output_dir) / "sample.npz", seed=args.seed, **kwargs)
    else:
        kwargs = {}
        if args.n_patients is not None:
            kwargs["n_patients"] = args.n_patients
        if args.image_size is not None:
            size_argument = {"idc": "patch_size", "nifti": "volume_size"}.get(args.layout, "image_size")
            kwargs[size_argument] = args.image_size
        written = LAYOUT_WRITERS[args.layout](args.output_dir, seed=args.seed, **kwargs)
    print(f"wrote the {args.layout} sample to {written}")
    return written


if __name__ == "__main__":
    main()
