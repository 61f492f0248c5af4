# LINE messages: core/message.c (validation, LINE-shaped errors) and the SDK
# builder <kizuna/message.h>, whose output is validated round trip.
# json-c re-parses rendered errors and builder output (core's PkgConfig::JSONC
# is not visible here).
pkg_check_modules(KZ_TEST_MESSAGE_JSONC REQUIRED IMPORTED_TARGET json-c)
add_executable(test_message ${CMAKE_CURRENT_SOURCE_DIR}/test_message.c)
target_link_libraries(test_message PRIVATE kz_message PkgConfig::KZ_TEST_MESSAGE_JSONC
                      PkgConfig::CMOCKA)
add_test(NAME message COMMAND test_message)

# <kizuna/message.h> must also compile as C++ (plugins may be C++).
find_program(KZ_MESSAGE_CXX NAMES c++ g++ clang++)
if(KZ_MESSAGE_CXX)
  add_test(NAME message_cxx
           COMMAND ${KZ_MESSAGE_CXX} -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only
                   -x c++ -include kizuna/message.h -I${PROJECT_SOURCE_DIR}/sdk/include /dev/null)
endif()
