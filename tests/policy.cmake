# Delivery policy (core/policy.c): tz_to_ms around DST, quiet hours per
# weekday, config errors, then promotional sends through the fx_promo
# fixture on a real config, bus, sender and sandbox (loopback) with a
# virtual clock: held in quiet hours, day and week caps with DEFER and
# DROP, priority order, a split multicast, metrics, a restart.
set(KZ_POLICY_FIXTURES ${KZ_TEST_FIXTURE_DIR}/policy)
kizuna_add_plugin(fx_promo ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/policy/fx_promo.c)
set_target_properties(fx_promo PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_POLICY_FIXTURES})

add_executable(test_policy ${CMAKE_CURRENT_SOURCE_DIR}/test_policy.c)
pkg_check_modules(KZ_TEST_POLICY_JSONC REQUIRED IMPORTED_TARGET json-c)
target_link_libraries(test_policy PRIVATE kz_test_support kz_sender kz_sandbox kz_daemon
                      PkgConfig::KZ_TEST_POLICY_JSONC PkgConfig::CMOCKA)
target_compile_definitions(test_policy PRIVATE KZ_POLICY_FIXTURES="${KZ_POLICY_FIXTURES}")
add_dependencies(test_policy fx_promo)
add_test(NAME policy COMMAND test_policy)
set_tests_properties(policy PROPERTIES TIMEOUT 120)
