# Bundled plugins (plugins/<name>/): each test_<name>.c runs <name>.c and
# the shared helpers in plugins/common against the fake host (testing.h).
# Compiled into the test executable, not dlopen'ed, as sdk/examples/hello.
set(_kz_plugin_common ${PROJECT_SOURCE_DIR}/plugins/common/jscan.c
                      ${PROJECT_SOURCE_DIR}/plugins/common/msgset.c)
file(GLOB _kz_plugin_tests ${PROJECT_SOURCE_DIR}/plugins/*/test_*.c)
foreach(test_src ${_kz_plugin_tests})
  get_filename_component(_kz_dir ${test_src} DIRECTORY)
  get_filename_component(_kz_name ${_kz_dir} NAME)
  if(_kz_name STREQUAL "common")
    continue() # not a plugin: its own test below
  endif()
  # every source of the plugin's folder but its tests
  file(GLOB _kz_srcs ${_kz_dir}/*.c)
  list(FILTER _kz_srcs EXCLUDE REGEX "/test_[^/]*\\.c$")
  add_executable(test_plugin_${_kz_name} ${_kz_srcs} ${_kz_plugin_common} ${test_src})
  target_link_libraries(test_plugin_${_kz_name} PRIVATE kizuna::sdk PkgConfig::CMOCKA)
  add_test(NAME plugin_${_kz_name}_unit COMMAND test_plugin_${_kz_name})
endforeach()

# The shared JSON scanner on its own.
add_executable(test_plugin_common_jscan ${PROJECT_SOURCE_DIR}/plugins/common/jscan.c
               ${PROJECT_SOURCE_DIR}/plugins/common/test_jscan.c)
target_link_libraries(test_plugin_common_jscan PRIVATE PkgConfig::CMOCKA)
add_test(NAME plugin_common_jscan COMMAND test_plugin_common_jscan)

# The same plugins as built (.so) in the real host, end to end with the
# sandbox: greeting on follow and on unblock, autoreply's rules, cooldown
# and default, tags in the friend registry; step scenarios on the virtual
# clock, stopped by events, and across restarts.
pkg_check_modules(KZ_TEST_LIVE_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_plugins_live ${CMAKE_CURRENT_SOURCE_DIR}/test_plugins_live.c)
target_link_libraries(test_plugins_live PRIVATE kz_test_support kz_daemon PkgConfig::KZ_TEST_LIVE_CURL
                      PkgConfig::CMOCKA)
target_compile_definitions(test_plugins_live PRIVATE KZ_PLUGIN_DIR="${KIZUNA_BUILD_PLUGIN_DIR}")
add_dependencies(test_plugins_live greeting autoreply step)
add_test(NAME plugins_live COMMAND test_plugins_live)
set_tests_properties(plugins_live PROPERTIES TIMEOUT 120)
