#pragma once
// Internal to pipelines/resources: the rewrite and in-list dependency hooks the resource table
// (specs.cpp) names, one per type. Defined in rewrite.cpp.

#include "pipelines/resources/specs.hpp"

#include <boost/json/object.hpp>

#include <string>
#include <vector>

namespace ferry::pipelines::resources {

void rewrite_ai_secret(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_environment(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_role(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_group(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_project(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_env_var(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_function(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_prompt(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_project_score(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_experiment(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_dataset_snapshot(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_view(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_project_automation(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);
void rewrite_acl(detail::rewriter& rw, const boost::json::object& src, boost::json::object& p);

std::vector<std::string> deps_role(const boost::json::object& o);
std::vector<std::string> deps_group(const boost::json::object& o);
std::vector<std::string> deps_experiment(const boost::json::object& o);
std::vector<std::string> deps_prompt(const boost::json::object& o);
std::vector<std::string> deps_function(const boost::json::object& o);

}  // namespace ferry::pipelines::resources
