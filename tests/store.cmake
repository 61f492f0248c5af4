# Store (SQLite backend): migrations, events, instances, failures, dead
# letters, kv, transactions and savepoints. Links sqlite3 directly only to
# forge databases (future schema, deleted rows) the store API cannot make.
add_executable(test_store ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c)
target_link_libraries(test_store PRIVATE kz_store PkgConfig::SQLITE PkgConfig::CMOCKA Threads::Threads)
add_test(NAME store COMMAND test_store)
