// `ferry verify`: the composition root. Open the run (state dir if it exists, runtime, both sides),
// compare every stream, the attachments and the object counts (run/verification.cpp), write
// verify_report.json and return the exit code (run/reports.cpp): an interrupted verify exits 130 and
// its report says it is incomplete, never equal.
#include "pipelines/migrate.hpp"

#include "run/reports.hpp"
#include "run/run_context.hpp"
#include "run/verification.hpp"

#include "engine/runtime.hpp"

namespace ferry::pipelines {

int run_verify(const migrate_config& cfg) { return run_verify(cfg, run_options{}); }

int run_verify(const migrate_config& cfg, const run_options& ro) {
  auto c = open_run_context(cfg, ro, "verify", state_use::read_if_exists);
  if (!c) return 2;
  verification v(*c);
  c->rt->spawn(c->rt->executor(), v.run(), [&v](std::exception_ptr e) {
    if (e && engine::is_cancellation(e)) v.cancelled = true;
    else if (e) v.failures.push_back("verify aborted: " + engine::what_of(e));
  });
  c->rt->run();
  return finish_verify(cfg, v.end(), c->out, c->err);
}

}  // namespace ferry::pipelines
