#include "emulator/events.hpp"

#include "events_test_util.hpp"

#include <doctest/doctest.h>

using ferry::test::events_fixture;
using ferry::test::target_of;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

std::string upload_url(events_fixture& f, const std::string& key) {
  auto r = f.post("/attachment", R"({"key":")" + key +
                                      R"(","filename":"a.txt","content_type":"text/plain","org_id":"org-1"})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto o = r.json().as_object();
  CHECK(o.at("headers").is_object());
  return std::string(o.at("signedUrl").as_string());
}

}  // namespace

TEST_CASE("attachments: upload URL, unauthenticated PUT, status, download URL, GET returns the bytes") {
  events_fixture f;
  const std::string url = upload_url(f, "att-1");
  const std::string put_target = target_of(url);
  CHECK(f.api.is_public_path(put_target));
  const std::string bytes = std::string("hello attachment\0\x01\xff", 19);
  auto put = f.call(http::verb::put, put_target, bytes, /*json_content_type=*/false);
  REQUIRE(put.status == 200);
  auto st = f.post("/attachment/status", R"({"key":"att-1","org_id":"org-1","status":{"upload_status":"done"}})");
  CHECK(st.status == 200);

  auto info = f.get("/attachment?key=att-1&filename=a.txt&content_type=text%2Fplain&org_id=org-1");
  REQUIRE_MESSAGE(info.status == 200, info.body);
  auto o = info.json().as_object();
  CHECK(o.at("status").at("upload_status") == "done");
  const std::string download = target_of(o.at("downloadUrl").as_string());
  auto got = f.get(download);
  REQUIRE(got.status == 200);
  CHECK(got.body == bytes);
  CHECK(got.content_type == "text/plain");
}

TEST_CASE("attachments: status follows the upload until /attachment/status says otherwise") {
  events_fixture f;
  const std::string url = upload_url(f, "att-2");
  auto before = f.get("/attachment?key=att-2&org_id=org-1").json().as_object();
  CHECK(before.at("status").at("upload_status") == "uploading");
  f.call(http::verb::put, target_of(url), "data", false);
  auto after = f.get("/attachment?key=att-2&org_id=org-1").json().as_object();
  CHECK(after.at("status").at("upload_status") == "done");
  f.post("/attachment/status", R"({"key":"att-2","org_id":"org-1","status":{"upload_status":"error","error_message":"boom"}})");
  auto err = f.get("/attachment?key=att-2&org_id=org-1").json().as_object();
  CHECK(err.at("status").at("upload_status") == "error");
  CHECK(err.at("status").at("error_message") == "boom");
}

TEST_CASE("attachments: errors — unknown key 404, other org 403, bad signature 403, missing fields 400") {
  events_fixture f;
  CHECK(f.get("/attachment?key=nope&org_id=org-1").status == 404);
  CHECK(f.get("/attachment?org_id=org-1").status == 400);
  CHECK(f.post("/attachment", R"({"filename":"x"})").status == 400);
  CHECK(f.post("/attachment", R"({"key":"k","org_id":"org-2"})").status == 403);
  CHECK(f.post("/attachment/status", R"({"key":"k","org_id":"org-1"})").status == 400);
  CHECK(f.post("/attachment/status", R"({"key":"k","org_id":"org-1","status":{"upload_status":"weird"}})").status == 400);
  const std::string url = upload_url(f, "att-3");
  std::string target = target_of(url);
  target.back() = target.back() == '0' ? '1' : '0';
  CHECK(f.call(http::verb::put, target, "x", false).status == 403);
  // GET of a signed URL before any upload is 404.
  CHECK(f.get(target_of(url)).status == 404);
  CHECK(f.call(http::verb::delete_, target_of(url)).status == 405);
}

TEST_CASE("attachments: the same key in two orgs is two attachments") {
  events_fixture f;
  f.call(http::verb::put, target_of(upload_url(f, "shared")), "org one", false);
  f.ctx.org_id = "org-2";
  auto r = f.get("/attachment?key=shared&org_id=org-2");
  CHECK(r.status == 404);
}

TEST_CASE("attachments: an external url is handed back as the download URL") {
  events_fixture f;
  auto r = f.get("/attachment?url=https%3A%2F%2Fexample.com%2Fa.png&org_id=org-1");
  REQUIRE(r.status == 200);
  CHECK(r.json().at("downloadUrl") == "https://example.com/a.png");
}
