# The kizuna command line end to end (needs the bus and loader fixtures).
add_test(NAME cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli.sh $<TARGET_FILE:kizuna>
         ${KZ_TEST_FIXTURE_DIR}/bus ${KZ_TEST_FIXTURE_DIR}/plugins)
