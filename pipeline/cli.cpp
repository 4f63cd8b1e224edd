#include "pipeline/cli.h"

#include <sys/resource.h>

#include "pipeline/cli_common.h"
#include "pipeline/registry_command.h"

namespace persoflow::pipeline {
namespace {

constexpr const char* kVersion = "0.1.0";

// A secret-handling process writes no core file.
void harden_process() {
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
}

}  // namespace

int run_cli(int argc, char** argv) {
  harden_process();
  CLI::App app{"persoflow: personalization data preparation for payment cards and secure elements.\n"
               "Exit codes: 0 ok, 1 internal, 2 usage, 3 input, 4 not found, 5 login, 6 HSM,\n"
               "7 integrity, 8 already exists, 9 unsupported, 10 reject limit (docs/cli.md).",
               "persoflow"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  GlobalOptions g;
  add_hsm_options(app, g);
  int exit_code = kExitOk;
  add_keys_commands(app, g, exit_code);
  add_import_commands(app, g, exit_code);
  add_audit_commands(app, g, exit_code);
  add_scp_commands(app, g, exit_code);
  add_prep_commands(app, g, exit_code);
  add_run_commands(app, g, exit_code);
  add_registry_commands(app, g, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  return exit_code;
}

}  // namespace persoflow::pipeline
