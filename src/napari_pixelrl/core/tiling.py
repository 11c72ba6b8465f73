"""Exact tiling of an episode: tiles with a halo as wide as everything an output pixel can depend on.

A PixelRL episode is local: a pixel of the result depends only on the input within some radius, which grows with
every step. A tile that carries a halo of at least that radius around the part it writes (its *core*) gives that
core exactly the values the whole image would, up to float rounding. At the image's own edges a tile simply stops
at the edge, where the network's zero padding and the filters' border rules act as they do on the whole image.

The radius, step by step (``e_t``: how far from a tile's edge the state ``s_t`` is still wrong; ``g_t`` the
same for the convGRU's hidden state; every 3x3 convolution of dilation ``d`` reaches ``d`` pixels):

* trunk features of ``s_t``: ``e_t + sum(trunk dilations)``;
* the convGRU's new hidden state: ``max(features + sum(branch dilations), g_t) + 2`` (two chained 3x3 convs,
  ``U(r ⊙ h)`` with ``r`` from ``U_r h``), and the action a further ``+ 1`` (the policy head);
* the next state takes the action's filter result: ``e_{t+1} = max(action, e_t + filter radius)``;
* the value map at step ``t``: ``features + sum(branch dilations) + 1``.

For the paper's network (trunk 1, 2, 3, 4; branches 3, 2; 5x5 filters) this is 18 pixels per step, 90 for 5 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from .config import ModelConfig
from .memory import episode_bytes

__all__ = ["MIN_CORE", "Tile", "grown", "halo_width", "plan_tiles", "tile_side_for_budget"]

MIN_CORE = 64
"""Smallest core side the automatic tile size picks (smaller cores spend most of their time on the halo)."""


@dataclass(frozen=True)
class Tile:
    """One tile of a ``height x width`` plane: where to read, where its result goes.

    ``read`` is the window to run the episode on (core plus halo, clipped to the plane); ``write`` the core, in
    plane coordinates; ``inner`` the core in the read window's coordinates, ``result[inner] -> output[write]``.
    """

    read: tuple[slice, slice]
    write: tuple[slice, slice]

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core within the read window."""
        return tuple(slice(w.start - r.start, w.stop - r.start) for r, w in zip(self.read, self.write, strict=True))  # type: ignore[return-value]

    @property
    def read_shape(self) -> tuple[int, int]:
        """Height and width of the read window."""
        return self.read[0].stop - self.read[0].start, self.read[1].stop - self.read[1].start


def halo_width(config: ModelConfig, steps: int, filter_radius: int = 2) -> int:
    """Pixels around a tile's core on which an episode of ``steps`` steps can depend (module docstring).

    Parameters
    ----------
    config : ModelConfig
        The network.
    steps : int
        Episode length T.
    filter_radius : int
        How far the widest action looks (2 for the paper's 5x5 filters).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    trunk, branch = sum(config.trunk_dilations), sum(config.branch_dilations)
    state = hidden = 0  # e_t, g_t: the first hidden state is zeros everywhere, exact
    needed = 0
    for _ in range(steps):
        features = state + trunk
        needed = max(needed, features + branch + 1)  # value map V(s_t)
        hidden = max(features + branch, hidden) + 2
        action = hidden + 1
        needed = max(needed, action)
        state = max(action, state + filter_radius)
    return max(needed, state)


def tile_side_for_budget(budget_bytes: int, channels: int, halo: int) -> int:
    """Largest core side whose tile (core plus halo on both sides) fits an episode into ``budget_bytes``.

    Never below :data:`MIN_CORE`: a budget too small for that gives the minimum, and the caller's memory check
    decides whether it can run.
    """
    side = math.isqrt(max(budget_bytes, 0) // episode_bytes(1, 1, channels))
    return max(side - 2 * halo, MIN_CORE)


def _bounds(length: int, core: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into ``ceil(length / core)`` runs of nearly equal length (none longer than core)."""
    count = max(1, math.ceil(length / core))
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(pairwise(edges))


def grown(region: tuple[slice, slice], halo: int, height: int, width: int) -> tuple[slice, slice]:
    """``region`` (rows, columns) and ``halo`` pixels around it, clipped to a ``height x width`` plane."""
    rows, cols = region
    return (
        slice(max(rows.start - halo, 0), min(rows.stop + halo, height)),
        slice(max(cols.start - halo, 0), min(cols.stop + halo, width)),
    )


def plan_tiles(height: int, width: int, core: int, halo: int) -> list[Tile]:
    """Tiles covering a ``height x width`` plane, row by row: cores of at most ``core`` pixels a side, each read
    with ``halo`` pixels around it (fewer at the plane's edges). A core as large as the plane gives one tile."""
    if core < 1 or halo < 0:
        raise ValueError(f"core must be positive and halo non-negative, got core={core}, halo={halo}")
    tiles = []
    for y0, y1 in _bounds(height, core):
        for x0, x1 in _bounds(width, core):
            write = (slice(y0, y1), slice(x0, x1))
            tiles.append(Tile(read=grown(write, halo, height, width), write=write))
    return tiles
