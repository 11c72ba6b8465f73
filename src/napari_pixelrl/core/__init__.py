"""Qt-free PixelRL engine: actions, network, rollout, checkpoints and metrics.

Nothing in this package imports Qt or napari.
"""

from . import color  # noqa: F401  (registers the colour action set next to the denoising one)
from . import estimate  # noqa: F401  (registers the action sets with a CNN estimate, beyond the paper)
