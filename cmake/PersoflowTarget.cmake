# Helpers that give every target the same flags and an explicit dependency list.

add_library(persoflow_build_flags INTERFACE)
target_compile_options(persoflow_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
  $<$<BOOL:${PERSOFLOW_WERROR}>:-Werror>)
if(PERSOFLOW_SANITIZE)
  target_compile_options(persoflow_build_flags INTERFACE
    -fsanitize=${PERSOFLOW_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(persoflow_build_flags INTERFACE -fsanitize=${PERSOFLOW_SANITIZE})
endif()

# persoflow_library(NAME SOURCES a.cpp ... DEPS persoflow::x ... [PRIVATE_DEPS ...])
# Creates persoflow_NAME with the alias persoflow::NAME. Headers are included as
# "NAME/file.h" from the repository root.
function(persoflow_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(persoflow_${name} STATIC ${A_SOURCES})
  add_library(persoflow::${name} ALIAS persoflow_${name})
  target_include_directories(persoflow_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(persoflow_${name}
    PUBLIC ${A_DEPS}
    PRIVATE persoflow_build_flags ${A_PRIVATE_DEPS})
endfunction()
