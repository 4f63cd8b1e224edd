// The command lines of `persoflow registry import|show|reservations` (docs/registry.md);
// the bodies are in registry_command.cpp. Needs no HSM.
#include <iostream>
#include <memory>

#include "pipeline/cli_common.h"
#include "pipeline/registry_command.h"

namespace persoflow::pipeline {
namespace {

int run_status(const Status& s) { return s ? static_cast<int>(kExitOk) : fail(s.error()); }

}  // namespace

void add_registry_commands(CLI::App& app, GlobalOptions& /*g*/, int& exit_code) {
  CLI::App* registry =
      app.add_subcommand("registry",
                         "SE registry: import SEs from CSV, show one SE, list counter reservations "
                         "(docs/registry.md)");
  registry->require_subcommand(1);
  registry->fallthrough();
  const char* footer =
      "Exit 0: done; 2: bad command line; 3: bad CSV (FILE:LINE: column C: reason) or not a\n"
      "registry; 4: no such registry, CSV file, SE id or MSI.";

  auto imp = std::make_shared<RegistryImportOptions>();
  CLI::App* import_cmd = registry->add_subcommand(
      "import",
      "Add or update SEs from a CSV file; the whole file is checked before anything is "
      "written, and a next_counter never goes down");
  import_cmd->fallthrough();
  import_cmd->footer(footer);
  import_cmd->add_option("--db", imp->db, "Registry database (SQLite; created when missing)")
      ->required();
  import_cmd->add_option("--csv", imp->csv, "CSV file with a header line (docs/registry.md)")
      ->required();
  import_cmd->add_flag("--json", imp->json, "Print the summary as JSON");
  import_cmd->callback(
      [imp, &exit_code] { exit_code = run_status(run_registry_import(*imp, std::cout)); });

  auto show = std::make_shared<RegistryShowOptions>();
  CLI::App* show_cmd = registry->add_subcommand(
      "show", "Every field of one SE and the counter ranges reserved for it");
  show_cmd->fallthrough();
  show_cmd->footer(footer);
  show_cmd->add_option("--db", show->db, "Registry database (SQLite)")->required();
  CLI::Option* se = show_cmd->add_option("--se", show->se_id, "SE id");
  CLI::Option* msi = show_cmd->add_option("--msi", show->msi, "MSI");
  se->excludes(msi);
  show_cmd->add_flag("--json", show->json, "Print the SE as JSON");
  show_cmd->callback(
      [show, &exit_code] { exit_code = run_status(run_registry_show(*show, std::cout)); });

  auto list = std::make_shared<RegistryListOptions>();
  CLI::App* list_cmd = registry->add_subcommand(
      "reservations", "List every counter reservation: id, time, state, counters, run, product");
  list_cmd->fallthrough();
  list_cmd->footer(footer);
  list_cmd->add_option("--db", list->db, "Registry database (SQLite)")->required();
  list_cmd->add_flag("--json", list->json, "Print the list as JSON");
  list_cmd->callback(
      [list, &exit_code] { exit_code = run_status(run_registry_reservations(*list, std::cout)); });
}

}  // namespace persoflow::pipeline
