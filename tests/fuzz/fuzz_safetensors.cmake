# The safetensors fuzz target (torch-free): include()d by tests/fuzz/CMakeLists.txt after
# samda_add_fuzzer is defined (SAMDA_FUZZ builds only).
# model/safetensors.cpp is the C++ face of common/safetensors_format.c, hence samda_common.
add_library(samda_safetensors_fuzz STATIC ${CMAKE_SOURCE_DIR}/model/safetensors.cpp ${CMAKE_SOURCE_DIR}/model/sha256.cpp)
target_include_directories(samda_safetensors_fuzz PUBLIC ${CMAKE_SOURCE_DIR}/model)
target_link_libraries(samda_safetensors_fuzz PUBLIC samda_common)
samda_add_fuzzer(fuzz_safetensors SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_safetensors.cpp LIBS samda_safetensors_fuzz)
