"""The napari side for scripts and notebooks: restore a viewer's layer and get the result layers.

This module imports napari (unlike :mod:`napari_pixelrl.api`); the widgets themselves are reached through
``viewer.window.add_plugin_dock_widget("napari-pixelrl", "Restore")``.
"""

from ._napari.layers import RestoredLayers, layer_image, restore_layer

__all__ = ["RestoredLayers", "layer_image", "restore_layer"]
