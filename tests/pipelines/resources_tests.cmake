# Resource migration tests (owned by the resources work; included by tests/pipelines/CMakeLists.txt).
# Unit tests join pipelines_tests; the loopback tests against two in-process emulators get their own binary.
set(PIPELINES_RESOURCES_UNIT_TESTS
  resources/specs_test.cpp
  resources/report_test.cpp
)
if(TARGET emulator)
  add_executable(pipelines_resources_integration_tests
    resources/org_migration_test.cpp
    resources/http_loopback_test.cpp
    resources/first_run_test.cpp
  )
  target_link_libraries(pipelines_resources_integration_tests PRIVATE pipelines emulator test_support project_warnings)
  set_source_files_properties(resources/org_migration_test.cpp resources/http_loopback_test.cpp resources/first_run_test.cpp PROPERTIES COMPILE_OPTIONS -Wno-mismatched-new-delete)
  doctest_discover_tests(pipelines_resources_integration_tests PROPERTIES LABELS integration)
endif()
