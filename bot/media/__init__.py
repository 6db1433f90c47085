"""Media: prepare input images, pick and fit result videos (Pillow/PyAV; no discord)."""
