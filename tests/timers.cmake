# Durable timers: the store's table and due walk, the pump on the real bus
# with a virtual clock, and the ABI 1.4 slots through a fixture built twice
# (two instances of one shop using the same keys). Links sqlite3 directly
# only to read the due walk's query plan.
set(KZ_TIMER_FIXTURES ${KZ_TEST_FIXTURE_DIR}/timers)
foreach(fx fx_timer fx_timer2)
  kizuna_add_plugin(${fx} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/timers/fx_timer.c)
  target_compile_definitions(${fx} PRIVATE FX_NAME="${fx}")
  set_target_properties(${fx} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_TIMER_FIXTURES})
endforeach()

add_executable(test_timers ${CMAKE_CURRENT_SOURCE_DIR}/test_timers.c)
target_link_libraries(test_timers PRIVATE kz_test_support kz_daemon PkgConfig::SQLITE
                      PkgConfig::CMOCKA)
target_compile_definitions(test_timers PRIVATE KZ_TIMER_FIXTURES="${KZ_TIMER_FIXTURES}")
add_dependencies(test_timers fx_timer fx_timer2)
add_test(NAME timers COMMAND test_timers)
set_tests_properties(timers PROPERTIES TIMEOUT 120)
