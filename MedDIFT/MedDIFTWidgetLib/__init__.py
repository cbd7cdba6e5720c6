"""The parts of the MedDIFT module that need Slicer and Qt but are not the panel's wiring.

``slicerlogic``: what the logic does through Slicer (dependencies, worker
process and environment, weights download, views); ``panel``: the pairs and
time-point tables and the heatmap landmark list. Split from ``MedDIFT.py`` so
that each file stays readable; ``MedDIFT.py`` keeps Slicer's module template
shape (module, parameter node, widget, logic, test).
"""
