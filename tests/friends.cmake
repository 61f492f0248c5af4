# The friend registry: the core.friends instance fed by events on the real
# bus and store, and end to end with the real sandbox, ingress and sender
# (the profile fetched on follow lands in the registry).
pkg_check_modules(KZ_TEST_FRIENDS_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_friends ${CMAKE_CURRENT_SOURCE_DIR}/test_friends.c)
target_link_libraries(test_friends PRIVATE kz_test_support kz_daemon PkgConfig::KZ_TEST_FRIENDS_CURL
                      PkgConfig::CMOCKA)
add_test(NAME friends COMMAND test_friends)
set_tests_properties(friends PROPERTIES TIMEOUT 120)

# The ABI 1.3 friend slots through a fixture plugin on the real host.
set(KZ_FRIEND_FIXTURES ${KZ_TEST_FIXTURE_DIR}/friends)
kizuna_add_plugin(fx_friend ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/friends/fx_friend.c)
set_target_properties(fx_friend PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_FRIEND_FIXTURES})
target_compile_definitions(test_friends PRIVATE KZ_FRIEND_FIXTURES="${KZ_FRIEND_FIXTURES}")
add_dependencies(test_friends fx_friend)
