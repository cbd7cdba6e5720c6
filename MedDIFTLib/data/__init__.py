"""Data: volumes and their geometry, point sets, image and landmark files, input checks.

No torch here: everything in ``data`` runs with numpy, SciPy and SimpleITK alone.
"""
