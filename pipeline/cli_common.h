// What every command of the persoflow CLI shares: the HSM options, error reporting
// with exit codes, and opening the HSM for a command body.
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>
#include <string>

#include "config/audit_settings.h"
#include "config/config_file.h"
#include "config/hsm_settings.h"
#include "pipeline/exit_codes.h"
#include "pipeline/hsm_session.h"

namespace persoflow::pipeline {

inline constexpr const char* kHsmFooter =
    "HSM options (--module, --token, --pin-env, --pin-file, --config, --max-sessions) and --audit-log\n"
    "may be given before or after the command; see persoflow --help and docs/configuration.md.";

struct GlobalOptions {
  std::string config_path;
  config::HsmFlags hsm;
  std::optional<std::string> audit_log;  // --audit-log
};

// Prints "persoflow: error: ..." and returns the error's exit code.
int fail(const Error& error);

Result<config::HsmSettings> settings_from(const GlobalOptions& g);

// The audit log's path (--audit-log, $PERSOFLOW_AUDIT_LOG, [audit] log), or nullopt when
// none is configured (docs/audit.md).
Result<std::optional<std::string>> audit_log_from(const GlobalOptions& g);
// The same for commands that log when a log is configured and run without one otherwise
// (import, prep, run): the path, or "" for none.
Result<std::string> optional_audit_log(const GlobalOptions& g);

// --workers N|auto (prep, import): nullopt for auto, else the count (0 to 64).
Result<std::optional<std::size_t>> parse_worker_count(const std::string& text);

// What prep and import resolve before opening the HSM: --workers, the HSM settings their
// worker processes start with, and the audit log.
struct WorkerCommandSettings {
  std::optional<std::size_t> workers;
  config::HsmSettings hsm;
  std::string audit_log;
};
Result<WorkerCommandSettings> worker_command_settings(const GlobalOptions& g, const std::string& workers);

// Runs `body` against an open HSM session, turning errors into exit codes.
template <typename Body>
int with_hsm(const GlobalOptions& g, Body&& body) {
  auto settings = settings_from(g);
  if (!settings) return fail(settings.error());
  auto session = open_hsm(*settings);
  if (!session) return fail(session.error());
  Status s = body(*session->keys);
  if (!s) return fail(s.error());
  return kExitOk;
}

void add_hsm_options(CLI::App& app, GlobalOptions& g);

// Publishes a JSON run report (atomically); nothing when `path` is empty.
Status write_report(const std::string& path, const std::string& json);

// One function per command family, each in its own file.
void add_keys_commands(CLI::App& app, GlobalOptions& g, int& exit_code);     // keys_cli.cpp
void add_import_commands(CLI::App& app, GlobalOptions& g, int& exit_code);   // import_cli.cpp
void add_audit_commands(CLI::App& app, GlobalOptions& g, int& exit_code);    // audit_cli.cpp
void add_scp_commands(CLI::App& app, GlobalOptions& g, int& exit_code);      // scp_cli.cpp
void add_prep_commands(CLI::App& app, GlobalOptions& g, int& exit_code);     // prep_cli.cpp
void add_run_commands(CLI::App& app, GlobalOptions& g, int& exit_code);      // run_cli.cpp

}  // namespace persoflow::pipeline
