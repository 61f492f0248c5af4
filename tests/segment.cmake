# Segment expressions: every construct, precedence, missing attributes, every
# compile error with its column, schema checks, and a bounded token-soup loop.
add_executable(test_segment ${CMAKE_CURRENT_SOURCE_DIR}/test_segment.c)
target_link_libraries(test_segment PRIVATE kz_segment PkgConfig::CMOCKA)
add_test(NAME segment COMMAND test_segment)
