# Segment broadcasts: 10,000 friends seeded into the store, the core's
# broadcast instance on the real bus, sender and in-process sandbox (each
# targeted friend one copy, multicasts of 500, cancel, dry run and quota),
# and the real `kizuna serve` SIGKILLed mid-broadcast and restarted.
pkg_check_modules(KZ_TEST_BC_CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(KZ_TEST_BC_JSONC REQUIRED IMPORTED_TARGET json-c)
add_executable(test_broadcast ${CMAKE_CURRENT_SOURCE_DIR}/test_broadcast.c)
target_link_libraries(test_broadcast PRIVATE kz_daemon PkgConfig::KZ_TEST_BC_CURL
                      PkgConfig::KZ_TEST_BC_JSONC PkgConfig::CMOCKA)
target_compile_definitions(test_broadcast PRIVATE KIZUNA_BIN="$<TARGET_FILE:kizuna>")
add_dependencies(test_broadcast kizuna)
add_test(NAME broadcast COMMAND test_broadcast)
set_tests_properties(broadcast PROPERTIES TIMEOUT 300)
