# Loader tests: fixture plugins (tests/fixtures/plugins), the frozen ABI 1.0
# fixture (tests/abi/v1.0), test_loader and the plugin_exports check.
set(KZ_FIXTURE_PLUGIN_DIR ${KZ_TEST_FIXTURE_DIR}/plugins)
set(_kz_fx_src ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/plugins)
set(_kz_plugin_map ${PROJECT_SOURCE_DIR}/sdk/cmake/kizuna_plugin.map)

# A fixture built like any plugin (kizuna_add_plugin), into the fixture dir.
function(kz_fixture_plugin name src)
  kizuna_add_plugin(${name} ${_kz_fx_src}/${src})
  set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KZ_FIXTURE_PLUGIN_DIR})
  target_compile_definitions(${name} PRIVATE FX_NAME="${name}" ${ARGN})
  list(APPEND KZ_FIXTURE_PLUGINS ${name})
  set(KZ_FIXTURE_PLUGINS ${KZ_FIXTURE_PLUGINS} PARENT_SCOPE)
endfunction()

# A fixture that must not get the SDK's version script (it exports another
# symbol than kizuna_plugin_v1): a plain hidden-visibility module.
function(kz_fixture_module name src)
  add_library(${name} MODULE ${_kz_fx_src}/${src})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${KZ_FIXTURE_PLUGIN_DIR})
  target_link_libraries(${name} PRIVATE kizuna::sdk)
  target_link_options(${name} PRIVATE "LINKER:-z,defs")
  list(APPEND KZ_FIXTURE_PLUGINS ${name})
  set(KZ_FIXTURE_PLUGINS ${KZ_FIXTURE_PLUGINS} PARENT_SCOPE)
endfunction()

# A plugin built against a frozen SDK header set (tests/abi/v<abi>) and
# nothing else: the link options of kizuna_add_plugin, without kizuna::sdk,
# so a header edit in sdk/ cannot leak into it.
function(kz_frozen_plugin name abi src)
  add_library(${name} MODULE ${_kz_fx_src}/${src})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${KZ_FIXTURE_PLUGIN_DIR}
                        LINK_DEPENDS "${_kz_plugin_map}")
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/abi/v${abi})
  target_link_options(${name} PRIVATE
    "LINKER:-z,defs"
    "LINKER:--version-script=${_kz_plugin_map}")
  list(APPEND KZ_FIXTURE_PLUGINS ${name})
  set(KZ_FIXTURE_PLUGINS ${KZ_FIXTURE_PLUGINS} PARENT_SCOPE)
endfunction()

set(KZ_FIXTURE_PLUGINS)
kz_fixture_plugin(fx_ok fx_ok.c)
kz_fixture_module(fx_noentry fx_noentry.c)
kz_fixture_module(fx_major2 fx_major2.c)
kz_fixture_plugin(fx_minor_new fx_minor_new.c)
kz_fixture_plugin(fx_short fx_short.c)
kz_fixture_plugin(fx_nohandler fx_nohandler.c)
kz_fixture_plugin(fx_loadfail fx_loadfail.c)
kz_fixture_plugin(fx_badname fx_badname.c)
kz_fixture_plugin(fx_badsub fx_badsub.c)
kz_fixture_plugin(fx_nullentry fx_desc.c FX_NULL_ENTRY)
kz_fixture_plugin(fx_noname fx_desc.c FX_NO_NAME)
kz_fixture_plugin(fx_misnamed fx_desc.c FX_MISNAMED)
kz_fixture_plugin(fx_descmajor2 fx_desc.c FX_DESC_MAJOR2)
kz_fixture_plugin(fx_loadquiet fx_desc.c FX_LOAD_QUIET)
kz_fixture_plugin(fx_badtype fx_schema.c FX_BAD_TYPE)
kz_fixture_plugin(fx_badkey fx_schema.c FX_BAD_KEY)
kz_fixture_plugin(fx_dupsetting fx_schema.c FX_DUP_SETTING)
kz_fixture_plugin(fx_reserved fx_schema.c FX_RESERVED)
kz_frozen_plugin(fx_frozen_v1_0 1.0 fx_frozen_v1_0.c)
kz_frozen_plugin(fx_frozen_v1_1 1.1 fx_frozen_v1_1.c)
kz_frozen_plugin(fx_frozen_v1_2 1.2 fx_frozen_v1_2.c)
kz_frozen_plugin(fx_frozen_v1_3 1.3 fx_frozen_v1_3.c)
kz_frozen_plugin(fx_frozen_v1_4 1.4 fx_frozen_v1_4.c)
kz_frozen_plugin(fx_frozen_v1_5 1.5 fx_frozen_v1_5.c)

add_executable(test_loader test_loader.c test_abi_layout.c)
target_link_libraries(test_loader PRIVATE kz_loader PkgConfig::CMOCKA)
target_include_directories(test_loader PRIVATE ${_kz_fx_src})
target_compile_definitions(test_loader PRIVATE
  KZ_FIXTURE_PLUGIN_DIR="${KZ_FIXTURE_PLUGIN_DIR}")
# Building the test builds what it loads.
add_dependencies(test_loader ${KZ_FIXTURE_PLUGINS})
add_test(NAME loader COMMAND test_loader)

# Every plugin exports exactly kizuna_plugin_v1: the in-tree ones (whatever
# is in the build plugin dir, plus hello by name so a missing build fails)
# and a fixture built with kizuna_add_plugin.
set(_kz_export_checked $<TARGET_FILE:fx_ok>)
if(TARGET hello)
  list(APPEND _kz_export_checked $<TARGET_FILE:hello>)
endif()
add_test(NAME plugin_exports
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/check_exports.sh
          ${KIZUNA_BUILD_PLUGIN_DIR} ${_kz_export_checked})
