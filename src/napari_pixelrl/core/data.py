"""Training data: clean images from a folder, random augmented crops, and a held-out validation set."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import list_images, read_image

__all__ = ["ImageSet", "center_crops", "random_crops", "to_unit_gray", "to_unit_rgb"]


def to_unit_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A clean grayscale image as float32 in [0, 1]: integers divided by their dtype's maximum, floats clipped.

    Raises
    ------
    ValueError
        If the image is not 2-D, not real, or not finite.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{name}: training needs 2-D grayscale images, got shape {image.shape}")
    return _to_unit(image, name)


def to_unit_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A colour image ``(H, W, 3 or 4)`` as channel-first RGB ``(3, H, W)`` float32 in [0, 1] (alpha dropped).

    Raises
    ------
    ValueError
        If the image is not RGB(A), not real, or not finite.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{name}: colour training needs RGB images (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(np.moveaxis(_to_unit(image[..., :3], name), -1, 0))


def _to_unit(image: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(image.dtype, np.integer):
        return (image.astype(np.float64) / np.iinfo(image.dtype).max).astype(np.float32)
    if not np.issubdtype(image.dtype, np.floating) or not np.isfinite(image).all():
        raise ValueError(f"{name}: training images must be finite real numbers, got dtype {image.dtype}")
    return np.clip(image, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ImageSet:
    """Clean training images held in memory, with the last few held out for validation.

    Attributes
    ----------
    train, validation : list of np.ndarray
        Float32 images in [0, 1]: ``(H, W)`` grayscale or ``(3, H, W)`` RGB.
    fingerprint : str
        SHA-256 (first 16 hex digits) of the file names and bytes, recorded with the policy.
    source : str
        The folder the images came from.
    """

    train: list[np.ndarray]
    validation: list[np.ndarray]
    fingerprint: str
    source: str

    @classmethod
    def from_folder(
        cls, folder: str | Path, validation_images: int = 0, min_size: int = 8, channels: int = 1
    ) -> ImageSet:
        """Read every image in ``folder`` (sorted); the last ``validation_images`` are held out.

        ``channels`` is 1 for grayscale images (:func:`to_unit_gray`) or 3 for RGB ones (:func:`to_unit_rgb`).

        Raises
        ------
        ValueError
            If the folder has no usable images or too few to hold some out.
        """
        files = list_images(folder)
        digest = hashlib.sha256()
        images = []
        for path in files:
            digest.update(path.name.encode() + path.read_bytes())
            images.append((to_unit_rgb if channels == 3 else to_unit_gray)(read_image(path), path.name))
        images = [image for image in images if min(image.shape[-2:]) >= min_size]
        if len(images) <= validation_images:
            raise ValueError(
                f"{folder} has {len(images)} usable images (>= {min_size} px a side); training needs more than the "
                f"{validation_images} held out for validation"
            )
        cut = len(images) - validation_images
        return cls(images[:cut], images[cut:], digest.hexdigest()[:16], str(folder))


def random_crops(
    images: Sequence[np.ndarray],
    batch_size: int,
    size: int,
    rng: np.random.Generator,
    *,
    max_rotation: float = 0.0,
    flip: bool = False,
    quarter_turns: bool = False,
) -> np.ndarray:
    """Random square crops ``(batch_size, C, size, size)`` float32, each from a random image (``(H, W)`` images:
    ``C = 1``; ``(C, H, W)`` ones: their ``C``).

    Each crop is optionally flipped left-right, rotated by a uniform angle in ``±max_rotation`` degrees
    (bilinear; a larger window is cut first so that no border fill enters the crop) and turned by a random
    multiple of 90° (``quarter_turns``: exact, no interpolation; with ``flip`` the eight orientations of the
    square). Images smaller than the window are padded by reflection.
    """
    window = size + 2 * math.ceil(size * (math.sqrt(2) - 1) / 2) + 2 if max_rotation > 0 else size
    channels = 1 if images[0].ndim == 2 else images[0].shape[0]
    crops = np.empty((batch_size, channels, size, size), dtype=np.float32)
    for b in range(batch_size):
        image = images[int(rng.integers(len(images)))]
        pad = [(0, 0)] * (image.ndim - 2) + [(0, max(0, window - n)) for n in image.shape[-2:]]
        if any(p for _, p in pad):
            image = np.pad(image, pad, mode="reflect")
        top = int(rng.integers(image.shape[-2] - window + 1))
        left = int(rng.integers(image.shape[-1] - window + 1))
        patch = image[..., top : top + window, left : left + window]
        if flip and rng.random() < 0.5:
            patch = patch[..., ::-1]
        if max_rotation > 0:
            angle = rng.uniform(-max_rotation, max_rotation)
            patch = ndimage.rotate(patch, angle, axes=(-1, -2), reshape=False, order=1, mode="reflect")
            start = (window - size) // 2
            patch = patch[..., start : start + size, start : start + size]
        if quarter_turns:
            patch = np.rot90(patch, k=int(rng.integers(4)), axes=(-2, -1))
        crops[b] = patch
    return crops


def center_crops(images: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """The central ``size x size`` region of each image (the whole image where it is smaller)."""
    out = []
    for image in images:
        top, left = max(0, (image.shape[-2] - size) // 2), max(0, (image.shape[-1] - size) // 2)
        out.append(np.ascontiguousarray(image[..., top : top + size, left : left + size]))
    return out
