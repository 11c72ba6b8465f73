"""Qt-free PixelRL engine: actions, network, rollout, checkpoints and metrics.

Nothing in this package imports Qt or napari.
"""

from . import color  # noqa: F401  (registers the colour action set next to the denoising one)
