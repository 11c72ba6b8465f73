"""Where training episodes come from: an input crop to restore and a target crop that the reward compares with.

The reward of a step is ``255 · ((y - s_t)² - (y - s_{t+1})²)`` for a target ``y``. With a clean target it is the
decrease of the squared error. With a second noisy image of the same scene as target, ``y = x + n`` with noise
``n`` independent of the input, ``E[(y - s)²] = (x - s)² + E[n²]``: the extra term cancels in the difference, so
the reward is unbiased, only noisier. Four sources, all NumPy and seeded by the trainer's generator:

* :class:`SyntheticNoise`: clean images, degraded afresh with a noise model each episode (the paper's setting);
* :class:`ImagePairs`: pairs of registered images, ``(noisy, clean)`` or two independent noisy acquisitions,
  or consecutive frames of a stack (:meth:`ImagePairs.from_frames`);
* :class:`NeighbourPairs`: a single noisy image, split into two half-size images by picking two different
  neighbouring pixels in every 2x2 cell (the sub-sampler of Neighbor2Neighbor, Huang et al., CVPR 2021).

Sources built from a few user images hold out a stripe at the bottom of each image for validation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .config import NoiseModel
from .data import ImageSet, center_crops, random_crops
from .noise import degrade

__all__ = [
    "ImagePairs",
    "NeighbourPairs",
    "SyntheticNoise",
    "TrainingData",
    "ValidationPair",
    "fingerprint",
    "neighbour_subsample",
    "paired_crops",
    "split_rows",
]


@dataclass(frozen=True)
class ValidationPair:
    """A held-out input and the reference its restoration is scored against."""

    input: np.ndarray
    reference: np.ndarray
    reference_is_clean: bool
    """False when the reference is itself noisy: PSNR against it is lower than the true PSNR, but rises and
    falls with it (its expected squared error is the true one plus the noise variance)."""


class TrainingData(Protocol):
    """What :class:`~napari_pixelrl.core.trainer.Trainer` needs from a source of episodes."""

    def batch(self, batch_size: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(input, target)`` crops, each ``(batch_size, C, size, size)`` float32 in about [0, 1] (``C``: 1 for
        grayscale, 3 for RGB)."""
        ...

    def validation(self, size: int, seed: int) -> list[ValidationPair]:
        """Fixed held-out pairs (the same for every call with the same arguments)."""
        ...

    def record(self) -> dict[str, Any]:
        """What the data were, for the policy's training record."""
        ...


def fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 (first 16 hex digits) of the arrays' shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode() + np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def split_rows(image: np.ndarray, fraction: float, min_rows: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Split an image into its top part (training) and a bottom stripe of ``fraction`` of the rows (validation).

    Raises
    ------
    ValueError
        If either part would have fewer than ``min_rows`` rows.
    """
    rows = image.shape[-2]
    held = max(min_rows, round(rows * fraction))
    if rows - held < min_rows:
        raise ValueError(
            f"an image of {rows} rows is too small to hold out {held} rows for validation and train on the rest; "
            f"use images of at least {2 * min_rows} rows"
        )
    return image[..., : rows - held, :], image[..., rows - held :, :]


class SyntheticNoise:
    """Clean images degraded afresh every episode; validation on fixed noisy centre crops of held-out images.

    Parameters
    ----------
    images : ImageSet
        Clean images in [0, 1] with a validation part.
    noise : NoiseModel
        The degradation to learn to undo.
    max_rotation, flip, quarter_turns
        Augmentation of the crops (see :func:`~napari_pixelrl.core.data.random_crops`).
    """

    def __init__(
        self,
        images: ImageSet,
        noise: NoiseModel,
        max_rotation: float = 0.0,
        flip: bool = True,
        quarter_turns: bool = False,
    ) -> None:
        self.images, self.noise = images, noise
        self.max_rotation, self.flip, self.quarter_turns = max_rotation, flip, quarter_turns

    def batch(self, batch_size: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        clean = random_crops(
            self.images.train,
            batch_size,
            size,
            rng,
            max_rotation=self.max_rotation,
            flip=self.flip,
            quarter_turns=self.quarter_turns,
        )
        return degrade(clean, self.noise, rng), clean

    def validation(self, size: int, seed: int) -> list[ValidationPair]:
        rng = np.random.default_rng([seed, 1])  # fixed noisy validation set, independent of training
        return [
            ValidationPair(degrade(clean, self.noise, rng), clean, True)
            for clean in center_crops(self.images.validation, size)
        ]

    def record(self) -> dict[str, Any]:
        return {
            "kind": "clean images + synthetic noise",
            "source": self.images.source,
            "fingerprint": self.images.fingerprint,
            "train_images": len(self.images.train),
            "validation_images": len(self.images.validation),
        }


def paired_crops(
    inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    batch_size: int,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Crops at the same random place of an input and its target, with the same random flip and quarter turn.

    Only exact pixel permutations are used as augmentation (no interpolation), so that the noise keeps its
    statistics. Images smaller than ``size`` are padded by reflection.
    """
    channels = 1 if inputs[0].ndim == 2 else inputs[0].shape[0]
    crops = np.empty((2, batch_size, channels, size, size), dtype=np.float32)
    for b in range(batch_size):
        index = int(rng.integers(len(inputs)))
        pair = np.stack([inputs[index], targets[index]])  # (2, H, W) or (2, C, H, W)
        pad = [(0, 0)] * (pair.ndim - 2) + [(0, max(0, size - n)) for n in pair.shape[-2:]]
        if any(p for _, p in pad):
            pair = np.pad(pair, pad, mode="reflect")
        top = int(rng.integers(pair.shape[-2] - size + 1))
        left = int(rng.integers(pair.shape[-1] - size + 1))
        patch = pair[..., top : top + size, left : left + size]
        if rng.random() < 0.5:
            patch = patch[..., ::-1]
        patch = np.rot90(patch, k=int(rng.integers(4)), axes=(-2, -1))
        crops[:, b] = patch.reshape(2, channels, size, size)
    return crops[0], crops[1]


class ImagePairs:
    """Registered pairs ``(input, target)``: noisy and clean, or two independent noisy acquisitions.

    Parameters
    ----------
    pairs : sequence of (np.ndarray, np.ndarray)
        Float32 images in [0, 1] (see :func:`napari_pixelrl.api.fine_tune` for the mapping), same shape within a
        pair: 2-D grayscale, or channel-first RGB ``(3, H, W)`` (e.g. before/after pairs of a colour style).
    target_is_clean : bool
        Whether the targets are clean (noisy/clean pairs) or noisy (noisy/noisy pairs, frames).
    validation_fraction : float
        Share of each pair's rows, at the bottom, held out for validation.
    name : str
        Shown in the training record.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        target_is_clean: bool,
        validation_fraction: float = 0.1,
        name: str = "image pairs",
    ) -> None:
        if not pairs:
            raise ValueError("no image pairs given")
        self.inputs, self.targets, self.held_out = [], [], []
        for k, (a, b) in enumerate(pairs):
            if a.shape != b.shape or not (a.ndim == 2 or (a.ndim == 3 and a.shape[0] == 3)):
                raise ValueError(
                    f"pair {k}: need two images of the same shape, (H, W) or (3, H, W); got {a.shape} and {b.shape}"
                )
            (a_train, a_val), (b_train, b_val) = split_rows(a, validation_fraction), split_rows(b, validation_fraction)
            self.inputs.append(a_train)
            self.targets.append(b_train)
            self.held_out.append((a_val, b_val))
        self.target_is_clean, self.name = target_is_clean, name
        self._fingerprint = fingerprint([image for pair in pairs for image in pair])

    @classmethod
    def from_frames(cls, frames: np.ndarray, validation_fraction: float = 0.1, name: str = "frames") -> ImagePairs:
        """Consecutive frames of a stack ``(N, H, W)`` as noisy pairs, both ways round (the scene must not move)."""
        if frames.ndim != 3 or frames.shape[0] < 2:
            raise ValueError(f"need a stack of at least 2 frames (N, H, W), got shape {frames.shape}")
        forward = [(frames[t], frames[t + 1]) for t in range(len(frames) - 1)]
        return cls(forward + [(b, a) for a, b in forward], False, validation_fraction, name)

    def batch(self, batch_size: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return paired_crops(self.inputs, self.targets, batch_size, size, rng)

    def validation(self, size: int, seed: int) -> list[ValidationPair]:
        return [
            ValidationPair(a[..., :size].copy(), b[..., :size].copy(), self.target_is_clean) for a, b in self.held_out
        ]

    def record(self) -> dict[str, Any]:
        kind = "noisy/clean pairs" if self.target_is_clean else "noisy/noisy pairs"
        return {"kind": kind, "source": self.name, "fingerprint": self._fingerprint, "pairs": len(self.inputs)}


def neighbour_subsample(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two half-size images from ``(B, 1, 2h, 2w)``: in every 2x2 cell, one random pixel and one of its two
    horizontal/vertical neighbours in the cell (Neighbor2Neighbor's sub-sampler). Returns ``(B, 1, h, w)`` each."""
    b, _, height, width = images.shape
    h, w = height // 2, width // 2
    # (B, h, w, 4): the 2x2 cell of each output pixel, positions 0 1 / 2 3.
    cells = images[:, 0, : 2 * h, : 2 * w].reshape(b, h, 2, w, 2).transpose(0, 1, 3, 2, 4).reshape(b, h, w, 4)
    neighbours = np.array([[1, 2], [0, 3], [0, 3], [1, 2]])  # the two in-cell neighbours of each position
    first = rng.integers(4, size=(b, h, w))
    second = neighbours[first, rng.integers(2, size=(b, h, w))]
    one = np.take_along_axis(cells, first[..., None], axis=3)[..., 0]
    two = np.take_along_axis(cells, second[..., None], axis=3)[..., 0]
    return one[:, None], two[:, None]


class NeighbourPairs:
    """Single noisy images made into noisy pairs by neighbour sub-sampling (for pixel-independent noise).

    The two sub-images see neighbouring, not identical, points of the scene, which biases the target slightly
    towards smoother images; it needs no second acquisition and no clean image.

    Parameters
    ----------
    images : sequence of np.ndarray
        2-D float32 noisy images in [0, 1].
    validation_fraction : float
        Share of each image's rows, at the bottom, held out for validation.
    name : str
        Shown in the training record.
    """

    def __init__(self, images: Sequence[np.ndarray], validation_fraction: float = 0.1, name: str = "noisy images"):
        if not images:
            raise ValueError("no noisy images given")
        parts = [split_rows(image, validation_fraction, min_rows=16) for image in images]
        self.train, self.held_out, self.name = [p[0] for p in parts], [p[1] for p in parts], name
        self._fingerprint = fingerprint(images)

    def batch(self, batch_size: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        crops, _ = paired_crops(self.train, self.train, batch_size, 2 * size, rng)
        first, second = neighbour_subsample(crops, rng)
        return np.ascontiguousarray(first), np.ascontiguousarray(second)

    def validation(self, size: int, seed: int) -> list[ValidationPair]:
        rng = np.random.default_rng([seed, 1])
        pairs = []
        for image in self.held_out:
            first, second = neighbour_subsample(image[None, None, :, : 2 * size], rng)
            pairs.append(ValidationPair(first[0, 0].copy(), second[0, 0].copy(), False))
        return pairs

    def record(self) -> dict[str, Any]:
        return {
            "kind": "single noisy images (neighbour sub-sampling)",
            "source": self.name,
            "fingerprint": self._fingerprint,
            "images": len(self.train),
        }
