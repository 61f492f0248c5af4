# SDK: the fake host (testing.h), the hello example's unit test, and an
# install + out-of-tree build of the example loaded by the real host.
set(_kz_hello_dir ${PROJECT_SOURCE_DIR}/sdk/examples/hello)

# hello.c compiled into the test (not dlopen'ed), run against testing.h.
add_executable(test_hello ${_kz_hello_dir}/hello.c ${_kz_hello_dir}/test_hello.c)
target_link_libraries(test_hello PRIVATE kizuna::sdk PkgConfig::CMOCKA)
add_test(NAME hello_unit COMMAND test_hello)

# testing.h's own semantics (kv, rollback, stale ctx, settings, JSON).
add_executable(test_sdk_testing ${PROJECT_SOURCE_DIR}/sdk/tests/test_testing.c)
target_link_libraries(test_sdk_testing PRIVATE kizuna::sdk PkgConfig::CMOCKA)
add_test(NAME sdk_testing_unit COMMAND test_sdk_testing)

# cmake --install into a temp prefix, build the example out of tree with
# find_package(kizuna) and with pkg-config + make, check its exports, and
# list it with `kizuna plugins`.
add_test(NAME sdk_install
         COMMAND sh ${PROJECT_SOURCE_DIR}/tests/sdk_install.sh ${PROJECT_SOURCE_DIR}
                 ${CMAKE_BINARY_DIR})
set_tests_properties(sdk_install PROPERTIES TIMEOUT 300)

# Plugins may be C++: the public headers compile as C++11 (plugin.h pulls in
# host.h, setting.h and event.h), the fake host as C++20 (designated
# initialisers in its table).
find_program(KZ_SDK_CXX NAMES c++ g++ clang++)
if(KZ_SDK_CXX)
  add_test(NAME sdk_headers_cxx
           COMMAND ${KZ_SDK_CXX} -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only
                   -x c++ -include kizuna/plugin.h -I${PROJECT_SOURCE_DIR}/sdk/include /dev/null)
  add_test(NAME sdk_testing_cxx
           COMMAND ${KZ_SDK_CXX} -std=c++20 -Wall -Wextra -Werror -pedantic -fsyntax-only
                   -x c++ -include kizuna/testing.h -I${PROJECT_SOURCE_DIR}/sdk/include /dev/null)
endif()
