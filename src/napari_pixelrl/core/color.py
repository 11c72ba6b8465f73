"""Colour: CIELAB conversion and the paper's 13 global colour actions, on ``(B, 3, H, W)`` RGB tensors in [0, 1].

The paper's colour-enhancement agent (after the MIT-Adobe FiveK experiments) changes each pixel's colour by one of
13 small global adjustments per step, sees the image in CIELAB and is rewarded by the decrease of the per-pixel
CIELAB distance to the target. Every action here is *pointwise* (a pixel's new colour depends only on its own
colour), so tiles of any size give exactly the untiled result:

* contrast ×0.95 / ×1.05 about mid-grey: ``0.5 + k (c - 0.5)`` on every channel;
* saturation ×0.95 / ×1.05 about the pixel's own luma ``Y = 0.299 R + 0.587 G + 0.114 B``: ``Y + k (c - Y)``;
* brightness ∓0.025 on every channel;
* ×0.95 / ×1.05 on the channel pairs (R, G), (G, B) and (R, B), the third channel unchanged.

As for grey levels, the state is not clipped during an episode; colours are clipped to [0, 1] when converted to
CIELAB (the network's view and the reward) and in the final image.
"""

from __future__ import annotations

from functools import partial

import torch

from .actions import Action, ActionSet, register_action_set

__all__ = [
    "COLOR",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "lab_distance",
    "lab_view",
    "rgb_to_lab",
    "scale_channels",
]

# sRGB (D65) -> CIE XYZ, and the D65 white point (2° observer): the constants scikit-image's rgb2lab uses.
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE = (0.95047, 1.0, 1.08883)
_LUMA = (0.299, 0.587, 0.114)
_DELTA = 6.0 / 29.0


def _check_rgb(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) RGB tensor, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {image.dtype}")


def _channel_weights(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (clipped first) to CIELAB ``(L, a, b)``, D65 white: ``L`` in [0, 100], ``a, b`` about ±110.

    Equal to scikit-image's ``rgb2lab`` up to float rounding.
    """
    _check_rgb(rgb)
    c = rgb.clamp(0.0, 1.0)
    linear = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / _channel_weights(_WHITE, rgb)
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(_DELTA**3) ** (1.0 / 3.0), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def lab_view(rgb: torch.Tensor) -> torch.Tensor:
    """What the colour network sees: CIELAB scaled to about [-1, 1] (``L / 50 - 1``, ``a / 110``, ``b / 110``)."""
    lab = rgb_to_lab(rgb)
    return torch.cat((lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / 110.0), dim=1)


def lab_distance(target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIELAB distance (CIE76 ΔE) between two RGB images, ``(B, 1, H, W)``: the colour reward's error."""
    return (rgb_to_lab(target) - rgb_to_lab(state)).square().sum(dim=1, keepdim=True).sqrt()


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Contrast about mid-grey: ``0.5 + factor · (c - 0.5)`` on every channel."""
    _check_rgb(image)
    return 0.5 + factor * (image - 0.5)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation about each pixel's luma ``Y``: ``Y + factor · (c - Y)`` (``factor = 0`` gives grey ``Y``)."""
    _check_rgb(image)
    luma = (image * _channel_weights(_LUMA, image)).sum(dim=1, keepdim=True)
    return luma + factor * (image - luma)


def adjust_brightness(image: torch.Tensor, delta: float) -> torch.Tensor:
    """Add ``delta`` to every channel."""
    _check_rgb(image)
    return image + delta


def scale_channels(image: torch.Tensor, channels: tuple[int, int], factor: float) -> torch.Tensor:
    """Multiply two of the three channels (e.g. ``(0, 1)``: red and green) by ``factor``."""
    _check_rgb(image)
    gains = [factor if c in channels else 1.0 for c in range(3)]
    return image * _channel_weights(tuple(gains), image)


def _identity(image: torch.Tensor) -> torch.Tensor:
    _check_rgb(image)
    return image


_PAIRS = {"RG": (0, 1), "GB": (1, 2), "RB": (0, 2)}
_PAIR_COLORS = {"RG": ((170, 170, 60), (230, 210, 40)), "GB": ((60, 160, 160), (40, 210, 220)),
                "RB": ((160, 60, 160), (220, 40, 200))}  # fmt: skip

COLOR = ActionSet(
    name="color",
    version=1,
    actions=(
        Action("do nothing", _identity, (90, 90, 90)),
        Action("contrast x0.95", partial(adjust_contrast, factor=0.95), (31, 119, 180)),
        Action("contrast x1.05", partial(adjust_contrast, factor=1.05), (174, 199, 232)),
        Action("saturation x0.95", partial(adjust_saturation, factor=0.95), (44, 160, 44)),
        Action("saturation x1.05", partial(adjust_saturation, factor=1.05), (152, 223, 138)),
        Action("brightness -0.025", partial(adjust_brightness, delta=-0.025), (140, 86, 75)),
        Action("brightness +0.025", partial(adjust_brightness, delta=0.025), (255, 187, 120)),
        *(
            Action(f"{pair} x{factor:g}", partial(scale_channels, channels=_PAIRS[pair], factor=factor), color)
            for pair in _PAIRS
            for factor, color in zip((0.95, 1.05), _PAIR_COLORS[pair], strict=True)
        ),
    ),
    radius=0,
    description="the paper's 13 global colour actions (contrast, saturation, brightness, channel pairs) on RGB",
    channels=3,
    observe=lab_view,
    error=lab_distance,
)
"""The paper's 13 colour actions on RGB states; the network sees CIELAB, the reward is the decrease of ΔE."""

register_action_set(COLOR)
