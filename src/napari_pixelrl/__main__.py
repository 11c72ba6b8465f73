"""``python -m napari_pixelrl``: the command line, e.g. under ``torchrun -m napari_pixelrl train ...``."""

import sys

from .cli import main

sys.exit(main())
