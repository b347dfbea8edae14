#include "pipelines/resources/report.hpp"

#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::resources;

TEST_CASE("report: per-type counts, id map, names and reasons, failure flips success") {
  migration_report r;
  r.add({"dataset", "project:p", "s1", "d1", "ds-one", object_status::created, "", "", {{"f", "why"}}, {}});
  r.add({"dataset", "project:p", "s2", "d2", "ds-two", object_status::unchanged, "", "", {}, {}});
  r.add({"function", "project:p", "s3", "", "bundle", object_status::skipped, "code_bundle_not_migratable", "re-push", {}, {}});
  r.add({"ai_secret", "organization", "s4", "d4", "OPENAI", object_status::created, "", "", {},
         {"secret value must be re-entered in the destination"}});
  CHECK(r.success());
  auto j = r.to_json();
  CHECK(j.at("resources").at_pointer("/dataset/created") == 1);
  CHECK(j.at("resources").at_pointer("/dataset/unchanged") == 1);
  CHECK(j.at("id_map").at_pointer("/dataset/s1") == "d1");
  CHECK(j.at("resources").at_pointer("/function/objects/0/reason") == "code_bundle_not_migratable");
  CHECK(j.at("resources").at_pointer("/function/objects/0/name") == "bundle");
  CHECK(j.at("resources").at_pointer("/dataset/objects/0/dropped_fields/0/field") == "f");
  auto text = r.summary_text();
  CHECK(text.find("SUCCESS") != std::string::npos);
  CHECK(text.find("code_bundle_not_migratable") != std::string::npos);
  CHECK(text.find("ai_secret 'OPENAI'") != std::string::npos);

  r.add({"prompt", "project:p", "s5", "", "broken", object_status::failed, "POST /v1/prompt: 400: bad", "", {}, {}});
  CHECK_FALSE(r.success());
  CHECK(r.summary_text().find("FAILED prompt 'broken'") != std::string::npos);
  CHECK(r.to_json().at("resources").at_pointer("/prompt/objects/0/error") == "POST /v1/prompt: 400: bad");
}

TEST_CASE("report: run-level errors fail the run") {
  migration_report r;
  r.add_error("project 'x' (from --projects) does not exist in the source organization");
  CHECK_FALSE(r.success());
  CHECK(r.to_json().at("errors").as_array().size() == 1);
}

TEST_CASE("report: a dry-run plan names what it would create and update, per type") {
  migration_report r;
  r.set_dry_run(true);
  r.add({"project", "organization", "p1", "dry-run:p1", "alpha", object_status::would_create, "", "", {}, {}});
  r.add({"dataset", "project:alpha", "s1", "d1", "golden", object_status::would_update, "", "", {}, {}});
  r.add({"dataset", "project:alpha", "s2", "d2", "silver", object_status::unchanged, "", "", {}, {}});
  for (int i = 0; i < 25; ++i)
    r.add({"experiment", "project:alpha", "e" + std::to_string(i), "dry-run:e" + std::to_string(i),
           "exp-" + std::to_string(i), object_status::would_create, "", "", {}, {}});
  auto text = r.summary_text();
  INFO(text);
  CHECK(text.find("dry run: nothing was written") != std::string::npos);
  CHECK(text.find("would create project: 1\n  - 'alpha' (organization)") != std::string::npos);
  CHECK(text.find("would update dataset: 1\n  - 'golden' (project:alpha)") != std::string::npos);
  CHECK(text.find("'silver'") == std::string::npos);  // unchanged objects are only counted
  CHECK(text.find("would create experiment: 25") != std::string::npos);
  CHECK(text.find("... and 5 more") != std::string::npos);

  migration_report real;
  real.add({"project", "organization", "p1", "d1", "alpha", object_status::created, "", "", {}, {}});
  CHECK(real.summary_text().find("would create") == std::string::npos);
}
