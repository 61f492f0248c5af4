# Sender: outbox rows sent to the real sandbox (in-process) by the real
# sender on a real bus and store: push/multicast/broadcast/reply delivered
# once, LINE's errors as message.failed, retries on 5xx and dropped
# connections, 409 after a lost answer, the monthly limit, reply fallback,
# deadlines, client-side rate limits; and a crash test (a child process
# killed with SIGKILL while the sandbox is slow, restarted: one delivery per
# row).
pkg_check_modules(KZ_TEST_SENDER_CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(KZ_TEST_SENDER_JSONC REQUIRED IMPORTED_TARGET json-c)
add_executable(test_sender ${CMAKE_CURRENT_SOURCE_DIR}/test_sender.c)
target_link_libraries(test_sender PRIVATE kz_test_support kz_sender kz_sandbox kz_daemon
                      PkgConfig::KZ_TEST_SENDER_CURL PkgConfig::KZ_TEST_SENDER_JSONC
                      PkgConfig::CMOCKA)
add_test(NAME sender COMMAND test_sender)
set_tests_properties(sender PROPERTIES TIMEOUT 120)

add_executable(test_sender_crash ${CMAKE_CURRENT_SOURCE_DIR}/test_sender_crash.c)
target_link_libraries(test_sender_crash PRIVATE kz_test_support kz_sender kz_sandbox kz_daemon
                      PkgConfig::KZ_TEST_SENDER_CURL PkgConfig::CMOCKA)
add_test(NAME sender_crash COMMAND test_sender_crash)
set_tests_properties(sender_crash PROPERTIES TIMEOUT 120)
