set(PIPELINES_RESOURCES_UNIT_TESTS)  # owned by the resources work: resources/*_test.cpp
