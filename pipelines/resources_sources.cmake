set(PIPELINES_RESOURCES_SOURCES)  # owned by the resources work: src/resources/*.cpp
