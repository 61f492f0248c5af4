# `kizuna steps` end to end: the step plugin as built (step.so) in the real
# host on a virtual clock, then the real kizuna binary reads the report.
# json-c re-parses the --json output (core's PkgConfig::JSONC is not visible here).
pkg_check_modules(KZ_TEST_STEPS_JSONC REQUIRED IMPORTED_TARGET json-c)
add_executable(test_steps_cli ${CMAKE_CURRENT_SOURCE_DIR}/test_steps_cli.c)
target_link_libraries(test_steps_cli PRIVATE kz_test_support kz_daemon PkgConfig::KZ_TEST_STEPS_JSONC
                      PkgConfig::CMOCKA)
target_compile_definitions(test_steps_cli PRIVATE KZ_PLUGIN_DIR="${KIZUNA_BUILD_PLUGIN_DIR}"
                           KZ_BIN="$<TARGET_FILE:kizuna>")
add_dependencies(test_steps_cli kizuna step)
add_test(NAME steps_cli COMMAND test_steps_cli)
set_tests_properties(steps_cli PROPERTIES TIMEOUT 120)
