# Stand-in for Slicer's extension description and packaging steps (not checked here).
