# Checkpoint and array I/O for model/ (owned by the model-io work; included by model/CMakeLists.txt
# and by tests/fuzz/CMakeLists.txt, which builds the torch-free half without libtorch).
#   SAMDA_MODEL_IO_SOURCES        torch-free: .pth reader/writer, .npy reader/writer
#   SAMDA_MODEL_IO_TORCH_SOURCES  at::Tensor glue (needs libtorch)
#   SAMDA_MODEL_IO_INCLUDE_DIR    folder holding pth_reader.h, npy.h, state_dict.h
#   samda_model_io_add_tests(IO_LIB TORCH_LIB)  registers the unit tests of these files
#     (plain C++ executables, labels "unit;model", env SAMDA_FIXTURES; exit 77 = skipped).
set(SAMDA_MODEL_IO_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/pth_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pth_writer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/npy.cpp)
set(SAMDA_MODEL_IO_TORCH_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/state_dict.cpp)
set(SAMDA_MODEL_IO_INCLUDE_DIR ${CMAKE_CURRENT_LIST_DIR})
set(SAMDA_MODEL_IO_TEST_DIR ${CMAKE_CURRENT_LIST_DIR}/../tests/unit/model)
if(NOT DEFINED SAMDA_FIXTURES)
  get_filename_component(SAMDA_FIXTURES "${CMAKE_CURRENT_LIST_DIR}/../tests/data" ABSOLUTE)
endif()

function(samda_model_io_add_tests io_lib torch_lib)
  set(tests test_pth_reader ${io_lib} test_npy ${io_lib})
  if(torch_lib)
    list(APPEND tests test_state_dict ${torch_lib})
  endif()
  while(tests)
    list(POP_FRONT tests name lib)
    add_executable(${name} ${SAMDA_MODEL_IO_TEST_DIR}/${name}.cpp)
    target_link_libraries(${name} PRIVATE ${lib})
    target_include_directories(${name} PRIVATE ${SAMDA_MODEL_IO_TEST_DIR} ${SAMDA_MODEL_IO_INCLUDE_DIR})
    target_compile_definitions(${name} PRIVATE SAMDA_MODEL_TEST_DIR="${SAMDA_MODEL_IO_TEST_DIR}")
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES
      LABELS "unit;model"
      TIMEOUT 300
      SKIP_RETURN_CODE 77
      ENVIRONMENT "SAMDA_FIXTURES=${SAMDA_FIXTURES};SAMDA_PYTHON=/usr/bin/python3")
  endwhile()
endfunction()
