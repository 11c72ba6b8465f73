"""Everything that imports napari or Qt: dock widgets, result layers and sample data."""
