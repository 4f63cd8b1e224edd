// `persoflow registry ...` (docs/registry.md): the SE registry from the command line.
// The bodies take their options and an output stream, so they can be read apart from
// the CLI11 wiring in registry_cli.cpp. Needs no HSM.
#pragma once

#include <ostream>
#include <string>

#include "engine/result.h"

namespace CLI {
class App;
}

namespace persoflow::pipeline {

struct GlobalOptions;

struct RegistryImportOptions {
  std::string db;  // created when missing
  std::string csv;
  bool json = false;
};

struct RegistryShowOptions {
  std::string db;
  std::string se_id;  // exactly one of se_id and msi
  std::string msi;
  bool json = false;
};

struct RegistryListOptions {
  std::string db;
  bool json = false;
};

// One summary line (or a JSON object): inserted, updated, unchanged, SEs now in the registry.
Status run_registry_import(const RegistryImportOptions& o, std::ostream& out);
// Every field of one SE and the counter ranges ever reserved for it; kNotFound when absent.
Status run_registry_show(const RegistryShowOptions& o, std::ostream& out);
// Every reservation, oldest first.
Status run_registry_reservations(const RegistryListOptions& o, std::ostream& out);

// Registers `registry import|show|reservations`; called from cli.cpp.
void add_registry_commands(CLI::App& app, GlobalOptions& g, int& exit_code);

}  // namespace persoflow::pipeline
