// ferry: CLI wiring only. Commands are implemented in pipelines/ and emulator/.
#include "engine/log.hpp"
#include "engine/settings.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"ferry: moves a whole Braintrust organization between API deployments"};
  app.require_subcommand(1);
  auto* migrate = app.add_subcommand("migrate", "migrate resources and event streams from source to destination");
  (void)migrate;
  CLI11_PARSE(app, argc, argv);
  std::fprintf(stderr, "ferry: not implemented yet\n");
  return 3;
}
