"""Synthetic degradations, drawn from a seeded NumPy generator so that training and benchmarks are reproducible
and independent of the device the network runs on."""

from __future__ import annotations

import string
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .config import Level, NoiseModel

__all__ = ["add_gaussian_noise", "degrade", "degrade_image", "fade_colors", "overlay_text"]

_CHARACTERS = string.ascii_letters + string.digits
_MAX_STRINGS = 10_000


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean + N(0, sigma/255)`` as float32, not clipped (the paper's test protocol).

    Parameters
    ----------
    clean : np.ndarray
        Image in [0, 1].
    sigma : float
        Standard deviation on the 0-255 scale.
    rng : np.random.Generator
        Source of the noise; draw images in a fixed order for reproducible results.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = rng.normal(0.0, sigma, size=np.shape(clean)) / 255.0
    return (np.asarray(clean, dtype=np.float32) + noise.astype(np.float32)).astype(np.float32)


def _draw(level: Level, rng: np.random.Generator) -> float:
    if isinstance(level, tuple):
        low, high = level
        return low if low == high else float(rng.uniform(low, high))
    return level


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def overlay_text(
    clean: np.ndarray, density: float, font_size: Level, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw random text over an image until a fraction ``density`` of its pixels is covered.

    Each string has 3-12 random letters and digits, a random grey level in [0, 1], a font height drawn from
    ``font_size`` (Pillow's built-in font, anti-aliased) and a random position (it may run off the edges). Text
    replaces the image where it is opaque and blends at its anti-aliased edges.

    Parameters
    ----------
    clean : np.ndarray
        ``(H, W)`` image in [0, 1].
    density : float
        Fraction of the pixels to cover, in [0, 1].
    font_size : float or (low, high)
        Font height in pixels, drawn per string.
    rng : np.random.Generator
        Source of every choice.

    Returns
    -------
    tuple of np.ndarray
        The degraded image (float32) and the text's opacity per pixel (float32 in [0, 1]; > 0 is the true mask).
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 2:
        raise ValueError(f"overlay_text draws on one (H, W) image, got shape {clean.shape}")
    height, width = clean.shape
    out, alpha = clean.copy(), np.zeros_like(clean)
    target = density * clean.size
    for _ in range(_MAX_STRINGS):
        if np.count_nonzero(alpha) >= target:
            break
        font = _font(round(_draw(font_size, rng)))
        text = "".join(rng.choice(list(_CHARACTERS), size=int(rng.integers(3, 13))))
        left, top, right, bottom = font.getbbox(text)
        stamp = Image.new("L", (right - left, bottom - top))
        ImageDraw.Draw(stamp).text((-left, -top), text, fill=255, font=font)
        opacity = np.asarray(stamp, dtype=np.float32) / 255.0
        x = int(rng.integers(-opacity.shape[1] // 2, width))
        y = int(rng.integers(-opacity.shape[0] // 2, height))
        grey = np.float32(rng.random())
        # the part of the stamp inside the image
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + opacity.shape[0], height), min(x + opacity.shape[1], width)
        if y1 <= y0 or x1 <= x0:
            continue
        a = opacity[y0 - y : y1 - y, x0 - x : x1 - x]
        region = out[y0:y1, x0:x1]
        region[...] = region * (1 - a) + a * grey  # exactly grey where opaque
        np.maximum(alpha[y0:y1, x0:x1], a, out=alpha[y0:y1, x0:x1])
    return out, alpha


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)
_WARM = np.array([0.4, 0.0, -0.4]).reshape(3, 1, 1)  # log-gains of a warm (red up, blue down) cast


def fade_colors(clean: np.ndarray, strength: float) -> np.ndarray:
    """Fade one RGB image ``(3, H, W)`` in [0, 1] as old prints and washed-out captures fade; clipped to [0, 1].

    With ``s = strength``, in this order: saturation about each pixel's luma ``Y`` times ``exp(-1.5 s)``
    (``Y + k (c - Y)``), contrast about mid-grey times ``exp(-s)``, a warm cast (red gain ``exp(0.4 s)``, blue gain
    ``exp(-0.4 s)``) and blacks lifted by ``0.5 s``. One strength is one fixed change (a style that a policy can
    learn to undo from what it sees); a range of strengths, drawn per image, makes a blind policy. The 13 colour
    actions (:mod:`~napari_pixelrl.core.color`) can undo each change.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 3 or clean.shape[0] != 3:
        raise ValueError(f"fading needs an RGB image (3, H, W), got shape {clean.shape}")
    s = float(strength)
    luma = (clean * _LUMA).sum(axis=0, keepdims=True)
    image = luma + np.exp(-1.5 * s) * (clean - luma)
    image = 0.5 + np.exp(-s) * (image - 0.5)
    image = image * np.exp(s * _WARM) + 0.5 * s
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _degrade_one(clean: np.ndarray, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    if noise.kind == "fading":
        return fade_colors(clean, _draw(noise.strength, rng))
    if noise.kind == "text":  # one (H, W) plane, or (1, H, W) from a (B, 1, H, W) batch
        plane = clean.reshape(clean.shape[-2:])
        return overlay_text(plane, _draw(noise.density, rng), noise.font_size, rng)[0].reshape(clean.shape)
    if noise.kind == "salt-and-pepper":
        density = _draw(noise.density, rng)
        hit = rng.random(clean.shape) < density
        salt = rng.random(clean.shape) < 0.5
        return np.where(hit, salt.astype(np.float32), clean).astype(np.float32)
    signal = np.asarray(clean, dtype=np.float32)
    if noise.kind == "poisson-gaussian":
        gain = _draw(noise.gain, rng)
        if gain > 0:
            signal = (gain * rng.poisson(np.clip(signal, 0.0, None) / gain)).astype(np.float32)
    return add_gaussian_noise(signal, _draw(noise.sigma or 0.0, rng), rng)


def degrade(clean: np.ndarray, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """Apply ``noise`` to clean images in [0, 1]; the result is float32 and not clipped.

    Parameters
    ----------
    clean : np.ndarray
        One image ``(H, W)``, or a batch ``(B, H, W)`` / ``(B, 1, H, W)`` whose images each draw their own
        parameters when the model has ranges (a blind policy's training data). For ``"fading"``: one RGB image
        ``(3, H, W)`` or a batch ``(B, 3, H, W)``.
    noise : NoiseModel
        What to apply. A fixed-σ Gaussian on one image draws exactly as :func:`add_gaussian_noise`.
    rng : np.random.Generator
        Source of all randomness.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim == 2 or (noise.kind == "fading" and clean.ndim == 3):
        return _degrade_one(clean, noise, rng)
    if clean.ndim not in (3, 4):
        raise ValueError(f"expected (H, W), (B, H, W) or (B, 1, H, W) images, got shape {clean.shape}")
    return np.stack([_degrade_one(image, noise, rng) for image in clean])


def degrade_image(image: np.ndarray, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """:func:`degrade` for one image as users hold it: ``(H, W)`` grayscale, or ``(H, W, 3)`` RGB for colour
    degradations (``"fading"``), which work on channel-first images."""
    if image.ndim == 3:
        return np.moveaxis(degrade(np.moveaxis(image, -1, 0), noise, rng), 0, -1)
    return degrade(image, noise, rng)
