"""Qt-free PixelRL engine: actions, network, rollout, checkpoints and metrics.

Nothing in this package imports Qt or napari.
"""
