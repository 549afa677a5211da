# cmake -DINPUT=file -DOUTPUT=header -P embed_text.cmake
# Writes a header defining `runner_source`, the input file as a C++ raw string literal.
file(READ ${INPUT} text)
string(FIND "${text}" ")tessera_py\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter")
endif()
file(WRITE ${OUTPUT} "// Generated from ${INPUT}; do not edit.\n#pragma once\n"
  "namespace tessera::sandbox_worker {\n"
  "inline constexpr const char* runner_source = R\"tessera_py(${text})tessera_py\";\n}\n")
