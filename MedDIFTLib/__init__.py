"""MedDIFT engine: diffusion-feature point matching between 3D scans.

Pure Python (numpy, SimpleITK, torch, MONAI); never imports ``slicer`` or Qt,
so the same code runs in the CLI, the background worker and the tests.
"""

__version__ = "0.1.0"
