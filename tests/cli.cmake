# The kizuna command line end to end (needs the bus and loader fixtures).
add_test(NAME cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli.sh $<TARGET_FILE:kizuna>
         ${KZ_TEST_FIXTURE_DIR}/bus ${KZ_TEST_FIXTURE_DIR}/plugins)
# The daemon's virtual clock moved from the command line (sandbox advance).
add_test(NAME cli_clock COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/clock.sh $<TARGET_FILE:kizuna>)
set_tests_properties(cli_clock PROPERTIES TIMEOUT 120)
