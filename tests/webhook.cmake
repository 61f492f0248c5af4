# Webhook: X-Line-Signature (known-answer vectors), request body → bus events
# for every event type of LINE's webhook.yml (fixtures in tests/webhook/),
# unknown types, uids, and every malformed-body error.
# json-c re-parses the payloads (core's PkgConfig::JSONC is not visible here).
pkg_check_modules(KZ_TEST_WEBHOOK_JSONC REQUIRED IMPORTED_TARGET json-c)
# libcrypto's one-shot HMAC() is the reference for the signatures.
pkg_check_modules(KZ_TEST_WEBHOOK_CRYPTO REQUIRED IMPORTED_TARGET libcrypto)
add_executable(test_webhook ${CMAKE_CURRENT_SOURCE_DIR}/test_webhook.c)
target_link_libraries(test_webhook PRIVATE kz_webhook PkgConfig::KZ_TEST_WEBHOOK_JSONC
                      PkgConfig::KZ_TEST_WEBHOOK_CRYPTO PkgConfig::CMOCKA Threads::Threads)
target_compile_definitions(test_webhook PRIVATE
  KZ_WEBHOOK_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/webhook")
add_test(NAME webhook COMMAND test_webhook)
