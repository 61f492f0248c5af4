# The kizuna command line end to end (needs the bus and loader fixtures).
add_test(NAME cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli.sh $<TARGET_FILE:kizuna>
         ${KZ_TEST_FIXTURE_DIR}/bus ${KZ_TEST_FIXTURE_DIR}/plugins)
# The daemon's virtual clock moved from the command line (sandbox advance).
add_test(NAME cli_clock COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/clock.sh $<TARGET_FILE:kizuna>)
set_tests_properties(cli_clock PROPERTIES TIMEOUT 120)
# The demo's configuration (make demo) stays valid: its plugins, as built,
# accept their settings.
add_test(NAME demo_config COMMAND $<TARGET_FILE:kizuna> check -c ${PROJECT_SOURCE_DIR}/conf/kizuna.conf)
set_tests_properties(demo_config PROPERTIES PASS_REGULAR_EXPRESSION "ok \\(1 shop\\(s\\), 2 plugin setting\\(s\\), 2 plugin\\(s\\) loaded\\)")
