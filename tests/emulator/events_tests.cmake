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
)
