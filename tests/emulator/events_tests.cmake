# Test sources of the emulator's event side (owned by emulator-events), included by
# tests/emulator/CMakeLists.txt. Paths are relative to tests/emulator/.
set(EMULATOR_EVENTS_TESTS
  btql_parse_test.cpp
  btql_query_test.cpp
  events_store_test.cpp
  events_persistence_test.cpp
  events_rest_test.cpp
  logs3_test.cpp
  attachments_test.cpp
  shared_scans_test.cpp
)

# Loopback tests (the real http_server on 127.0.0.1:0, a Beast client): a second executable labelled
# integration, built once transports has its HTTP server.
get_target_property(_emulator_events_transports_sources transports SOURCES)
if("src/http_server.cpp" IN_LIST _emulator_events_transports_sources)
  add_executable(emulator_events_integration_tests ${CMAKE_CURRENT_LIST_DIR}/events_loopback_test.cpp
                                                   ${CMAKE_CURRENT_LIST_DIR}/wire_events_fidelity_test.cpp)
  target_link_libraries(emulator_events_integration_tests PRIVATE emulator test_support project_warnings)
  doctest_discover_tests(emulator_events_integration_tests PROPERTIES LABELS integration)
endif()
