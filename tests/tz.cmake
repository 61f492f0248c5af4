# Shop time zones: UTC to local and back, across DST gaps and overlaps.
add_executable(test_tz ${CMAKE_CURRENT_SOURCE_DIR}/test_tz.c)
target_link_libraries(test_tz PRIVATE kz_base PkgConfig::CMOCKA)
add_test(NAME tz COMMAND test_tz)
