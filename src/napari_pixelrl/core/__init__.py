"""Qt-free PixelRL engine: actions, network, rollout, checkpoints and metrics.

Nothing in this package imports Qt or napari.
"""

# Importing these registers their action sets next to the paper's denoising one: the colour set, and the sets
# with a CNN estimate (beyond the paper).
from . import color, estimate  # noqa: F401
