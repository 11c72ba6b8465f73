"""Helpers shared by the benchmark scripts: where the shared data lives, timing, machine description, and the
affine-fitted scores of images whose units differ from their reference's (W2S stretched every image on its own)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from napari_pixelrl import api
from napari_pixelrl.core.environment import describe_machine
from napari_pixelrl.core.metrics import psnr, ssim

SHARED = Path(__file__).resolve().parents[2] / "shared"
RELEASE = SHARED / "reference" / "pixelrl-official"
BSD68 = SHARED / "data" / "BSD68"
W2S = SHARED / "data" / "microscopy" / "W2S"

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Result of ``fn()`` and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def machine() -> str:
    """One line naming the CPU, core count and library versions."""
    return describe_machine()


def fit(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``a · output + b`` with the least-squares ``a, b`` against ``reference``."""
    design = np.stack([output.ravel(), np.ones(output.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, reference.ravel(), rcond=None)
    return (a * output + b).astype(np.float32)


def fitted_scores(output: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of ``output`` against the [0, 1] ``clean`` image after :func:`fit` (the paper's protocol
    for both: clipped to [0, 1], rounded to 8 bits)."""
    fitted = fit(output, clean)
    return psnr(fitted, clean), ssim(fitted, clean)


def has_cnn_estimate(policy: api.Policy) -> bool:
    """Whether ``policy``'s last action is one of our CNN estimates (a ``denoise-cnn-*`` set; core/estimate.py)."""
    return policy.action_set.name.startswith("denoise-cnn-")


def estimate_alone(policy: api.Policy) -> Callable[[np.ndarray], np.ndarray]:
    """The CNN-estimate action (beyond the paper; core/estimate.py) of ``policy`` taken once by every pixel."""
    if not has_cnn_estimate(policy):
        raise ValueError(f"{policy.name}: action set {policy.action_set.name!r} has no CNN estimate")
    estimate = policy.action_set.actions[-1].apply
    return lambda x: estimate(torch.from_numpy(x)[None, None])[0, 0].clamp(0, 1).numpy()
