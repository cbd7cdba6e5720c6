# Stand-in for the SlicerConfig.cmake of a Slicer build tree: just enough for this extension's
# CMakeLists.txt to configure, build and install its scripted module with Slicer's own macro
# (SlicerMacroBuildScriptedModule.cmake, Slicer v5.12.3) and CTK's (ctkMacroCompilePythonScript.cmake).
# Pass -DPYTHON_EXECUTABLE=... (the Python that byte-compiles the scripts, as Slicer's own would).
set(Slicer_FOUND TRUE)
set(Slicer_USE_PYTHONQT ON)
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 12)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.12/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(CTK_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionNothing.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionNothing.cmake")
