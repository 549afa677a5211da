# tessera_embed(TARGET FUNCTION key=path...): compiles the files into TARGET, readable through
# `const std::map<std::string_view, std::string_view>& tessera::FUNCTION()`; regenerated when a
# file changes.
function(tessera_embed target function)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${function}.cpp)
  set(paths "")
  foreach(pair IN LISTS ARGN)
    string(FIND "${pair}" "=" eq)
    math(EXPR start "${eq} + 1")
    string(SUBSTRING "${pair}" ${start} -1 path)
    list(APPEND paths ${path})
  endforeach()
  string(REPLACE ";" "\\;" files "${ARGN}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${function} "-DFILES=${files}"
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    DEPENDS ${paths} ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    COMMENT "Embedding files for ${function}()")
  target_sources(${target} PRIVATE ${out})
endfunction()
