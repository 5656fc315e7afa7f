"""Loading files and arrays into float32 channel-first tensors in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ilm.data.integrity import UnreadableImageError
from monai_ilm.transforms import LoadImageWithPathd, array_to_channel_first, load_image


def test_grey_png_keeps_rows_first_orientation_and_8_bit_scale(image_files):
    paths, arrays = image_files
    image = load_image(paths["grey"])
    assert image.shape == (1, 10, 20) and image.dtype == torch.float32
    np.testing.assert_allclose(image[0].numpy(), arrays["grey"] / 255.0, rtol=1e-6)


def test_sixteen_bit_png_is_scaled_by_its_depth_not_saturated(image_files):
    paths, arrays = image_files
    image = load_image(paths["sixteen"])
    np.testing.assert_allclose(image[0].numpy(), arrays["sixteen"] / 65535.0, rtol=1e-6)
    assert 0.0 <= image.min() and image.max() <= 1.0 and (image < 0.5).float().mean() > 0.3


@pytest.mark.parametrize("name, channels", [("rgb", 3), ("rgba", 3), ("palette", 3), ("photo", 3), ("grey_alpha", 1)])
def test_colour_modes(image_files, name, channels):
    image = load_image(image_files[0][name])
    assert image.shape[0] == channels and 0.0 <= image.min() and image.max() <= 1.0
    if name == "rgba":  # alpha is dropped, colour kept
        np.testing.assert_allclose(image.numpy(), np.moveaxis(image_files[1]["rgb"], -1, 0) / 255.0, rtol=1e-6)


def test_nifti_volume_is_channel_first_and_min_max_scaled(image_files):
    volume = load_image(image_files[0]["volume"])
    assert volume.shape == (1, 6, 7, 8)
    assert float(volume.min()) == 0.0 and float(volume.max()) == 1.0


@pytest.mark.parametrize(
    "array, shape",
    [
        (np.zeros((28, 28), np.uint8), (1, 28, 28)),
        (np.full((28, 28, 3), 255, np.uint8), (3, 28, 28)),
        (np.zeros((3, 9, 9), np.float32), (3, 9, 9)),
        (torch.ones(1, 5, 5), (1, 5, 5)),
    ],
)
def test_arrays(array, shape):
    image = array_to_channel_first(array)
    assert image.shape == shape and image.dtype == torch.float32 and 0.0 <= image.min() and image.max() <= 1.0


def test_array_scaling_by_dtype():
    assert float(array_to_channel_first(np.array([[0, 65535]], np.uint16)).max()) == 1.0
    assert float(array_to_channel_first(np.array([[0, 255]], np.uint8))[0, 0, 1]) == 1.0
    np.testing.assert_allclose(array_to_channel_first(np.array([[-5.0, 5.0]])).numpy(), [[[0.0, 1.0]]])


def test_dictionary_transform_names_file_and_key(image_files, tmp_path):
    paths, _ = image_files
    loader = LoadImageWithPathd(["image", "mask"], allow_missing_keys=True)
    assert loader({"image": str(paths["grey"]), "label": 3})["image"].shape == (1, 10, 20)
    with pytest.raises(
        FileNotFoundError, match=f"image file '{tmp_path / 'gone.png'}' does not exist. \\(key 'image'\\)"
    ):
        loader({"image": str(tmp_path / "gone.png")})
    with pytest.raises(UnreadableImageError, match=f"image file '{paths['truncated']}' cannot be read.*key 'mask'"):
        loader({"image": str(paths["grey"]), "mask": str(paths["truncated"])})


def test_min_max_option_and_bad_intensity(image_files):
    image = load_image(image_files[0]["grey"], intensity="minmax")
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    with pytest.raises(ValueError, match=r"^intensity: expected one of \["):
        LoadImageWithPathd("image", intensity="zscore")
