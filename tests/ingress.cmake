# Ingress: the HTTP server in-process on the real bus and store, driven by
# libcurl and raw sockets (statuses, signature, limits, durability before
# 200, redelivery, concurrency, /healthz, /metrics); metrics: the Prometheus
# text format and concurrent updates.
add_executable(test_metrics ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c)
target_link_libraries(test_metrics PRIVATE kz_metrics PkgConfig::CMOCKA)
add_test(NAME metrics COMMAND test_metrics)

# The bus fixtures (same as tests/bus.cmake, which may not be built).
set(KZ_BUS_FIXTURES ${KZ_TEST_FIXTURE_DIR}/bus)
if(NOT TARGET fx_counter)
  kizuna_add_plugin(fx_counter ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/bus/fx_counter.c)
  target_compile_definitions(fx_counter PRIVATE FX_NAME="fx_counter")
  set_target_properties(fx_counter PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_BUS_FIXTURES})
endif()

pkg_check_modules(KZ_TEST_INGRESS_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_ingress ${CMAKE_CURRENT_SOURCE_DIR}/test_ingress.c)
target_link_libraries(test_ingress PRIVATE kz_test_support kz_daemon kz_ingress PkgConfig::KZ_TEST_INGRESS_CURL
                      PkgConfig::CMOCKA)
target_compile_definitions(test_ingress PRIVATE KZ_BUS_FIXTURES="${KZ_BUS_FIXTURES}")
add_dependencies(test_ingress fx_counter)
add_test(NAME ingress COMMAND test_ingress)
