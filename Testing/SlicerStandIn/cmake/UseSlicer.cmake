# Stand-in for Slicer's UseSlicer.cmake: the macros a scripted-module extension calls.
# The Python found here only byte-compiles the copied scripts (CTK's compile step).
set(PYTHONINTERP_FOUND TRUE)
set(PYTHONLIBS_FOUND TRUE)
if(NOT PYTHON_LIBRARIES)
  set(PYTHON_LIBRARIES "${PYTHON_EXECUTABLE}")
endif()
include(${CTK_CMAKE_DIR}/ctkFunctionExtractOptimizedLibrary.cmake)
include(${CTK_CMAKE_DIR}/ctkMacroCompilePythonScript.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/SlicerMacroBuildScriptedModule.cmake)
option(BUILD_TESTING "Slicer's generic module tests need a Slicer build; off here" OFF)
