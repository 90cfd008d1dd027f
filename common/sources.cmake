# The sources of samda_common, listed once: common/CMakeLists.txt builds them inside the tree, and
# model/CMakeLists.txt builds them when model/ is configured on its own.
set(SAMDA_COMMON_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/status.c
  ${CMAKE_CURRENT_LIST_DIR}/dicom_rules.c
  ${CMAKE_CURRENT_LIST_DIR}/atomic_file.c
  ${CMAKE_CURRENT_LIST_DIR}/random.c
  ${CMAKE_CURRENT_LIST_DIR}/npy_format.c
  ${CMAKE_CURRENT_LIST_DIR}/safetensors_format.c
  ${CMAKE_CURRENT_LIST_DIR}/url.c)
set(SAMDA_COMMON_INCLUDE_DIR ${CMAKE_CURRENT_LIST_DIR})
