# Sandbox: the LINE stand-in in-process on its own store, driven by libcurl
# (every endpoint, LINE's error texts, retry keys, rate and monthly limits,
# faults, restart on the same store), and a played user reaching a real
# ingress and bus.
pkg_check_modules(KZ_TEST_SANDBOX_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_sandbox ${CMAKE_CURRENT_SOURCE_DIR}/test_sandbox.c)
target_link_libraries(test_sandbox PRIVATE kz_test_support kz_sandbox kz_daemon kz_ingress
                      PkgConfig::KZ_TEST_SANDBOX_CURL PkgConfig::CMOCKA)
add_test(NAME sandbox COMMAND test_sandbox)
