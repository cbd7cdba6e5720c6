# The file Slicer's build generates from Base/Python/slicer/kits.py.in (Slicer_PYTHON_MODULES_CONFIG):
# the Python modules whose classes Slicer's own __init__.py imports into the ``slicer`` namespace.
# Here one: slicer-core (PyPI), the MRML and logic libraries of Slicer's core, built by Kitware.
available_kits = ["slicer_core"]
