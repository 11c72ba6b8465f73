"""Pictures of action maps for people: each action in its fixed colour, steps side by side, with a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .actions import ActionSet

__all__ = ["action_counts", "action_montage", "action_shares", "color_actions"]

_GAP = 6
_SWATCH = 12


def color_actions(actions: np.ndarray, action_set: ActionSet) -> np.ndarray:
    """RGB picture ``(..., 3)`` uint8 of an action map of any shape, each action in its colour.

    Raises
    ------
    ValueError
        If an index is outside the action set.
    """
    actions = np.asarray(actions)
    if actions.size and (actions.min() < 0 or actions.max() >= len(action_set)):
        raise ValueError(f"action indices must lie in [0, {len(action_set)}), got {actions.min()}..{actions.max()}")
    palette = np.array(action_set.colors, dtype=np.uint8)
    return palette[actions.astype(np.intp)]


def action_counts(actions: np.ndarray, n_actions: int) -> np.ndarray:
    """Number of pixels that took each action at each step: ``(T, n_actions)`` from an action map ``(T, H, W)``,
    or from an n-D array's ``(*stack, T, H, W)`` (all planes counted together)."""
    actions = np.asarray(actions)
    if actions.ndim < 3:
        raise ValueError(f"expected an action map (steps, H, W) or (*stack, steps, H, W), got shape {actions.shape}")
    # One step and one action at a time, on the uint8 data: no wide copy of an 8k x 8k x steps map.
    steps = actions.shape[-3]
    return np.array([[np.count_nonzero(actions[..., t, :, :] == a) for a in range(n_actions)] for t in range(steps)])


def action_shares(actions: np.ndarray, n_actions: int) -> np.ndarray:
    """Fraction of pixels that took each action at each step (:func:`action_counts` over the pixels of a step);
    each row sums to 1."""
    counts = action_counts(actions, n_actions)
    return counts / max(1, np.asarray(actions)[..., 0, :, :].size)


def action_montage(actions: np.ndarray, action_set: ActionSet) -> Image.Image:
    """Steps ``(T, H, W)`` side by side in action colours, above a legend with each action's share of pixels.

    Parameters
    ----------
    actions : np.ndarray
        Action indices per step, ``(T, H, W)``.
    action_set : ActionSet
        Names and colours of the actions.
    """
    actions = np.asarray(actions)
    if actions.ndim != 3:
        raise ValueError(f"expected an action map (steps, H, W), got shape {actions.shape}")
    steps, height, width = actions.shape
    font = ImageFont.load_default()
    line = _SWATCH + 4
    columns = 3
    rows = -(-len(action_set) // columns)
    total_width = max(steps * width + (steps - 1) * _GAP, 3 * 190)
    canvas = Image.new("RGB", (total_width, 18 + height + _GAP + rows * line + 4), "white")
    draw = ImageDraw.Draw(canvas)
    colored = color_actions(actions, action_set)
    for t in range(steps):
        left = t * (width + _GAP)
        draw.text((left, 2), f"step {t}", fill="black", font=font)
        canvas.paste(Image.fromarray(colored[t]), (left, 18))
    shares = action_shares(actions, len(action_set)).mean(axis=0)
    top = 18 + height + _GAP
    for index, (name, color) in enumerate(zip(action_set.names, action_set.colors, strict=True)):
        x, y = (index % columns) * (total_width // columns), top + (index // columns) * line
        draw.rectangle((x, y, x + _SWATCH, y + _SWATCH), fill=tuple(color), outline="black")
        draw.text((x + _SWATCH + 4, y), f"{name} ({100 * shares[index]:.0f}%)", fill="black", font=font)
    return canvas
