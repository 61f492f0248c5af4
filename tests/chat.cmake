# Chat: `kizuna chat`'s rendering of LINE messages (a table of message JSON
# and the text shown), and a scripted chat against the sandbox in-process
# and a real ingress and bus.
pkg_check_modules(KZ_TEST_CHAT_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(test_chat ${CMAKE_CURRENT_SOURCE_DIR}/test_chat.c)
target_link_libraries(test_chat PRIVATE kz_test_support kz_daemon kz_sandbox kz_ingress
                      PkgConfig::KZ_TEST_CHAT_CURL PkgConfig::CMOCKA)
add_test(NAME chat COMMAND test_chat)
set_tests_properties(chat PROPERTIES TIMEOUT 60)
