# Event bus: subscription matching, delivery, rollback, retries, dead letters,
# ordering under concurrent publishers, crash recovery of the real daemon.
set(KZ_BUS_FIXTURES ${KZ_TEST_FIXTURE_DIR}/bus)
foreach(fx fx_counter fx_mirror)
  kizuna_add_plugin(${fx} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/bus/fx_counter.c)
  target_compile_definitions(${fx} PRIVATE FX_NAME="${fx}")
  set_target_properties(${fx} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_BUS_FIXTURES})
endforeach()

add_executable(test_topic ${CMAKE_CURRENT_SOURCE_DIR}/test_topic.c)
target_link_libraries(test_topic PRIVATE kz_base PkgConfig::CMOCKA)
add_test(NAME topic COMMAND test_topic)

add_executable(test_bus ${CMAKE_CURRENT_SOURCE_DIR}/test_bus.c)
target_link_libraries(test_bus PRIVATE kz_test_support kz_daemon PkgConfig::CMOCKA)
target_compile_definitions(test_bus PRIVATE KZ_BUS_FIXTURES="${KZ_BUS_FIXTURES}"
  KZ_FROZEN_FIXTURES="${KZ_TEST_FIXTURE_DIR}/plugins")
add_dependencies(test_bus fx_counter fx_mirror fx_frozen_v1_1 fx_frozen_v1_2 fx_frozen_v1_3 fx_frozen_v1_4 fx_frozen_v1_5) # (loader.cmake)
add_test(NAME bus COMMAND test_bus)

add_executable(test_crash ${CMAKE_CURRENT_SOURCE_DIR}/test_crash.c)
target_link_libraries(test_crash PRIVATE kz_test_support kz_store PkgConfig::CMOCKA)
target_compile_definitions(test_crash PRIVATE KZ_BUS_FIXTURES="${KZ_BUS_FIXTURES}"
  KIZUNA_BIN="$<TARGET_FILE:kizuna>")
add_dependencies(test_crash fx_counter fx_mirror kizuna)
add_test(NAME crash_recovery COMMAND test_crash)
