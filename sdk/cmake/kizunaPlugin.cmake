# kizuna_add_plugin(<name> <source>...)
#
# Builds <name>.so as a kizuna plugin: hidden visibility, -Wl,-z,defs (every
# symbol resolved at link time; the host exports none), and a version script
# that exports kizuna_plugin_v1 only. Used in-tree and by find_package(kizuna).
set(_KIZUNA_PLUGIN_MAP "${CMAKE_CURRENT_LIST_DIR}/kizuna_plugin.map"
    CACHE INTERNAL "kizuna plugin version script")

function(kizuna_add_plugin name)
  if(NOT ARGN)
    message(FATAL_ERROR "kizuna_add_plugin(${name}): no sources given")
  endif()
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS "${_KIZUNA_PLUGIN_MAP}")
  target_link_libraries(${name} PRIVATE kizuna::sdk)
  target_link_options(${name} PRIVATE
    "LINKER:-z,defs"
    "LINKER:--version-script=${_KIZUNA_PLUGIN_MAP}")
endfunction()
