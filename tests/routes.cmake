# Plugin HTTP routes: the registry (matching, duplicates, removal waiting
# for callbacks in flight) and /shops/<shop>/<plugin>/… end to end, on the
# real bus, store and ingress over loopback, driven by libcurl; and the
# route fake of testing.h.
set(KZ_ROUTES_FIXTURES ${KZ_TEST_FIXTURE_DIR}/routes)
kizuna_add_plugin(fx_routes ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/routes/fx_routes.c)
set_target_properties(fx_routes PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_ROUTES_FIXTURES})

pkg_check_modules(KZ_TEST_ROUTES_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_routes ${CMAKE_CURRENT_SOURCE_DIR}/test_routes.c)
target_link_libraries(test_routes PRIVATE kz_test_support kz_daemon kz_ingress PkgConfig::KZ_TEST_ROUTES_CURL
                      PkgConfig::SQLITE PkgConfig::CMOCKA)
target_compile_definitions(test_routes PRIVATE KZ_ROUTES_FIXTURES="${KZ_ROUTES_FIXTURES}")
add_dependencies(test_routes fx_routes)
add_test(NAME routes COMMAND test_routes)

# The same fixture compiled into a test against testing.h's fake host.
add_executable(test_routes_fake ${CMAKE_CURRENT_SOURCE_DIR}/test_routes_fake.c
                                ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/routes/fx_routes.c)
target_link_libraries(test_routes_fake PRIVATE kizuna::sdk PkgConfig::CMOCKA)
add_test(NAME routes_fake COMMAND test_routes_fake)
