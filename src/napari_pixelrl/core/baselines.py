"""Classical filters that the benchmarks compare policies with (NumPy/SciPy, not used by the policies).

The adaptive median filter is the textbook one (Gonzalez & Woods, *Digital Image Processing*; Hwang & Haddad,
IEEE TIP 1995): at each pixel the window grows from 3x3 while its median is an extreme of the window (min or max,
likely an impulse); once it is not, the pixel is kept if it is not an extreme itself, otherwise replaced by the
median. A pixel whose largest window still has an extreme median takes that median. Borders repeat the edge pixel.

Auto levels is the classical one-click colour correction of photo editors: stretch the intensities between two
percentiles to [0, 1], per channel (which also removes a colour cast) or with one stretch for all channels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["adaptive_median_filter", "auto_levels", "median_filter"]


def median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` median filter of a 2-D image, edge pixels repeated at the border."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be odd and positive, got {size}")
    return ndimage.median_filter(np.asarray(image, dtype=np.float32), size=size, mode="nearest")


def adaptive_median_filter(image: np.ndarray, max_size: int = 7) -> np.ndarray:
    """Adaptive median filter (see the module docstring) with windows from 3x3 up to ``max_size x max_size``.

    Parameters
    ----------
    image : np.ndarray
        2-D image.
    max_size : int
        Largest window side, odd and at least 3.

    Returns
    -------
    np.ndarray
        float32 image of the same shape.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if max_size < 3 or max_size % 2 == 0:
        raise ValueError(f"max_size must be odd and at least 3, got {max_size}")
    out = image.copy()
    undecided = np.ones(image.shape, dtype=bool)
    for size in range(3, max_size + 1, 2):
        low = ndimage.minimum_filter(image, size=size, mode="nearest")
        high = ndimage.maximum_filter(image, size=size, mode="nearest")
        median = median_filter(image, size)
        found = undecided & (low < median) & (median < high)
        keep = (low < image) & (image < high)
        out[found] = np.where(keep, image, median)[found]
        undecided &= ~found
    out[undecided] = median[undecided]
    return out


def auto_levels(image: np.ndarray, low: float = 0.5, high: float = 99.5, per_channel: bool = True) -> np.ndarray:
    """Stretch an RGB image ``(H, W, 3)`` in [0, 1] so that the ``low`` and ``high`` percentiles become 0 and 1.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` image in [0, 1].
    low, high : float
        Percentiles mapped to black and white.
    per_channel : bool
        Stretch each channel on its own (evens out a colour cast) or all with the percentiles of all (keeps hues).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"auto levels needs an RGB image (H, W, 3), got shape {image.shape}")
    axes = (0, 1) if per_channel else None
    black = np.percentile(image, low, axis=axes, keepdims=True)
    white = np.percentile(image, high, axis=axes, keepdims=True)
    return np.clip((image - black) / np.maximum(white - black, 1e-6), 0.0, 1.0)
