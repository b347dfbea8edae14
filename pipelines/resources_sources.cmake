# Resource migration sources (owned by the resources work; included by pipelines/CMakeLists.txt).
# The OpenAPI Create*/Patch* allow-lists are bundled at build time: openapi_schemas.json (an extract of
# shared/spec/braintrust-openapi.json, sha256 d51a7016439cbfb6...) is embedded as a string literal, so
# nothing is fetched at run time and the allow-lists never change between runs of one binary.
set(_ferry_openapi_json ${CMAKE_CURRENT_SOURCE_DIR}/src/resources/openapi_schemas.json)
set(_ferry_openapi_cpp ${CMAKE_CURRENT_BINARY_DIR}/generated/openapi_schemas.cpp)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_ferry_openapi_json})
file(READ ${_ferry_openapi_json} _ferry_openapi_text)
file(CONFIGURE OUTPUT ${_ferry_openapi_cpp} CONTENT
"// Generated from pipelines/src/resources/openapi_schemas.json by resources_sources.cmake. Do not edit.
namespace ferry::pipelines::resources::detail {
extern const char* const k_openapi_schemas;
const char* const k_openapi_schemas = R\"FERRY_OPENAPI(${_ferry_openapi_text})FERRY_OPENAPI\";
}  // namespace ferry::pipelines::resources::detail
" @ONLY)
set(PIPELINES_RESOURCES_SOURCES
  src/resources/specs.cpp
  src/resources/rewrite.cpp
  src/resources/report.cpp
  src/resources/api.cpp
  src/resources/id_map.cpp
  src/resources/org_migrator.cpp
  src/resources/version_pins.cpp
  src/resources/dataset_pins.cpp
  src/resources/entry.cpp
  src/resources/http_api.cpp
  ${_ferry_openapi_cpp}
)
# GCC 12 false positive on Asio awaitable frames destroyed through parallel_group (as for stream_runner.cpp).
set_source_files_properties(src/resources/org_migrator.cpp src/resources/version_pins.cpp src/resources/dataset_pins.cpp src/resources/entry.cpp src/resources/api.cpp src/resources/http_api.cpp PROPERTIES COMPILE_OPTIONS -Wno-mismatched-new-delete)
