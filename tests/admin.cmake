# The admin API (/admin/* of the ingress): token, loopback rule, dead letters,
# replay and status on the real bus and store, libcurl as the client.
# fx_counter comes from tests/bus.cmake (included after this file) unless
# that area is left out.
set(KZ_BUS_FIXTURES ${KZ_TEST_FIXTURE_DIR}/bus)
if(KZ_TEST_AREAS AND NOT "bus" IN_LIST KZ_TEST_AREAS AND NOT TARGET fx_counter)
  kizuna_add_plugin(fx_counter ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/bus/fx_counter.c)
  target_compile_definitions(fx_counter PRIVATE FX_NAME="fx_counter")
  set_target_properties(fx_counter PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_BUS_FIXTURES})
endif()

pkg_check_modules(KZ_TEST_ADMIN_CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(KZ_TEST_ADMIN_JSONC REQUIRED IMPORTED_TARGET json-c)
add_executable(test_admin ${CMAKE_CURRENT_SOURCE_DIR}/test_admin.c)
target_link_libraries(test_admin PRIVATE kz_test_support kz_daemon kz_ingress PkgConfig::KZ_TEST_ADMIN_CURL
                      PkgConfig::KZ_TEST_ADMIN_JSONC PkgConfig::CMOCKA)
target_compile_definitions(test_admin PRIVATE KZ_BUS_FIXTURES="${KZ_BUS_FIXTURES}")
add_dependencies(test_admin fx_counter)
add_test(NAME admin COMMAND test_admin)
