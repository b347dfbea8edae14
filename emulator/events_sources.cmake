# Sources of the emulator's event side (owned by emulator-events), included by emulator/CMakeLists.txt.
# Paths are relative to emulator/.
set(EMULATOR_EVENTS_SOURCES
  src/btql.cpp
  src/btql_exec.cpp
  src/events.cpp
  src/event_summaries.cpp
  src/logs3.cpp
  src/attachments.cpp
)
