"""PixelRL image restoration: a Qt-free core and scripting API, with a napari plugin on top.

Furuta, Inoue & Yamasaki, "Fully Convolutional Network with Multi-Step Reinforcement Learning for Image
Processing", AAAI 2019.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
