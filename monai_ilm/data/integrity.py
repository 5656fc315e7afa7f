"""Checks that the images a datalist points to exist and can be decoded.

Opening every image is slow at full scale (112k chest X-rays), so readers only check that files
exist by default and decode them on request (``verify=True``). Whatever is not verified here is
still reported with its path when it fails to load (see
:class:`monai_ilm.transforms.LoadImageWithPathd`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from monai_ilm.data.files import NIFTI_EXTENSIONS, has_suffix

logger = logging.getLogger(__name__)

_MAX_NAMED = 5


class UnreadableImageError(ValueError):
    """An image file exists but cannot be decoded (truncated, corrupt or of an unknown format)."""


def check_image_readable(path: str | os.PathLike) -> None:
    """Fully decode the image at ``path`` and raise if that fails.

    PNG, JPEG and other 2D formats are checked with Pillow: ``verify`` walks the file structure and
    checksums, and ``load`` decodes every pixel, so a truncated file is caught wherever it was cut,
    not only a broken header. NIfTI volumes are read in full with nibabel.

    Args:
        path: the image file.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        UnreadableImageError: when the file exists but cannot be decoded; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file '{path}' does not exist.")
    try:
        if has_suffix(path, NIFTI_EXTENSIONS):
            import nibabel

            nibabel.load(path).get_fdata()
        else:
            from PIL import Image

            with Image.open(path) as image:
                image.verify()  # chunk structure and checksums: catches a PNG cut after its pixel data
            with Image.open(path) as image:
                image.load()  # every pixel: catches a file cut inside its pixel data
    except Exception as error:  # any decoder failure means the same thing to the user
        raise UnreadableImageError(f"image file '{path}' cannot be read ({type(error).__name__}: {error}).") from error


def _describe(paths: Sequence[str]) -> str:
    shown = ", ".join(f"'{p}'" for p in paths[:_MAX_NAMED])
    more = f" and {len(paths) - _MAX_NAMED} more" if len(paths) > _MAX_NAMED else ""
    return shown + more


def drop_or_raise_missing(
    datalist: list[dict], missing: Sequence[int], skip_unreadable: bool, source: str
) -> list[dict]:
    """Handle the datalist rows whose image file is missing.

    Args:
        datalist: the rows.
        missing: indices of the rows whose image does not exist.
        skip_unreadable: drop those rows (with a logged warning and count) instead of raising.
        source: where the rows came from (a CSV or a directory), quoted in messages.

    Raises:
        FileNotFoundError: when ``missing`` is not empty and ``skip_unreadable`` is false.
    """
    if len(missing) == 0:
        return datalist
    paths = [str(datalist[i]["image"]) for i in missing]
    if not skip_unreadable:
        raise FileNotFoundError(
            f"{len(paths)} image file(s) listed by {source} do not exist: {_describe(paths)} "
            "(pass skip_unreadable=True to drop them)."
        )
    logger.warning(
        "skipped %d of %d images listed by %s that do not exist: %s",
        len(paths),
        len(datalist),
        source,
        _describe(paths),
    )
    drop = set(int(i) for i in missing)
    return [item for i, item in enumerate(datalist) if i not in drop]


def verify_images(
    datalist: list[dict], skip_unreadable: bool = False, image_key: str = "image"
) -> tuple[list[dict], list[str]]:
    """Decode every image of ``datalist`` and keep the readable ones.

    Args:
        datalist: rows whose ``image_key`` holds a file path (rows holding arrays are kept as they are).
        skip_unreadable: drop unreadable or missing images (logging a warning with their count) instead
            of raising on the first one.
        image_key: the key holding the image path.

    Returns:
        The kept rows and the paths of the skipped images.

    Raises:
        FileNotFoundError: a listed image does not exist and ``skip_unreadable`` is false.
        UnreadableImageError: an image cannot be decoded and ``skip_unreadable`` is false.
    """
    kept: list[dict] = []
    skipped: list[str] = []
    for item in datalist:
        value = item[image_key]
        if not isinstance(value, (str, os.PathLike)):
            kept.append(item)
            continue
        try:
            check_image_readable(value)
        except (FileNotFoundError, UnreadableImageError):
            if not skip_unreadable:
                raise
            skipped.append(os.fspath(value))
            continue
        kept.append(item)
    if skipped:
        logger.warning("skipped %d of %d unreadable images: %s", len(skipped), len(datalist), _describe(skipped))
    return kept, skipped
