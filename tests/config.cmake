# Config: parsing, every error line (file:line and message), secrets, plugin
# setting schemas, the kz_setting accessors. Fixtures live in tests/config/.
add_executable(test_config ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c)
target_link_libraries(test_config PRIVATE kz_config PkgConfig::CMOCKA)
target_compile_definitions(test_config PRIVATE
  KZ_CONFIG_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/config")
add_test(NAME config COMMAND test_config)
