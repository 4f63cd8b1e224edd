#include "pipeline/cli_common.h"

#include <charconv>

#include "formats/atomic_file.h"

namespace persoflow::pipeline {

int fail(const Error& error) {
  std::cerr << "persoflow: error: " << error.message() << "\n";
  return exit_code_for(error);
}

namespace {

// The configuration file named by --config or $PERSOFLOW_CONFIG, if any.
Result<std::optional<config::ConfigFile>> load_config(const GlobalOptions& g) {
  std::string path = g.config_path;
  if (path.empty()) path = config::process_env("PERSOFLOW_CONFIG").value_or("");
  if (path.empty()) return std::optional<config::ConfigFile>();
  PF_ASSIGN_OR_RETURN(config::ConfigFile file, config::ConfigFile::load(path, config::persoflow_schema()));
  return std::optional<config::ConfigFile>(std::move(file));
}

}  // namespace

Result<config::HsmSettings> settings_from(const GlobalOptions& g) {
  PF_ASSIGN_OR_RETURN(std::optional<config::ConfigFile> file, load_config(g));
  return config::resolve_hsm_settings(g.hsm, file ? &*file : nullptr);
}

Result<std::optional<std::string>> audit_log_from(const GlobalOptions& g) {
  PF_ASSIGN_OR_RETURN(std::optional<config::ConfigFile> file, load_config(g));
  return config::resolve_audit_log(g.audit_log, file ? &*file : nullptr);
}

void add_hsm_options(CLI::App& app, GlobalOptions& g) {
  app.add_option("--config", g.config_path,
                 "Configuration file (default: $PERSOFLOW_CONFIG); see docs/configuration.md");
  app.add_option("--module", g.hsm.module,
                 "PKCS#11 module path (default: $PERSOFLOW_PKCS11_MODULE, then the config file, then " +
                     std::string(config::kDefaultModule) + ")");
  app.add_option("--token", g.hsm.token, "Token label (default: $PERSOFLOW_TOKEN, then the config file)");
  app.add_option("--pin-env", g.hsm.pin_env,
                 "Read the user PIN from this environment variable (default: PERSOFLOW_PIN)");
  app.add_option("--pin-file", g.hsm.pin_file,
                 "Read the user PIN from this file (one line, mode 0600)");
  app.add_option("--max-sessions", g.hsm.max_sessions, "Most PKCS#11 sessions open at once (default 8)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--audit-log", g.audit_log,
                 "Audit log to append to (default: $PERSOFLOW_AUDIT_LOG, then [audit] log in the config file); "
                 "inspect --reveal needs one (docs/audit.md)");
}

Status write_report(const std::string& path, const std::string& json) {
  if (path.empty()) return ok_status();
  PF_ASSIGN_OR_RETURN(auto file, formats::AtomicFile::create(path));
  const std::string text = json + "\n";
  PF_TRY(file.write(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
  return file.commit();
}

Result<std::string> optional_audit_log(const GlobalOptions& g) {
  PF_ASSIGN_OR_RETURN(const std::optional<std::string> path, audit_log_from(g));
  return path.value_or(std::string());
}

Result<std::optional<std::size_t>> parse_worker_count(const std::string& text) {
  if (text == "auto") return std::optional<std::size_t>{};
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n > 64) {
    return Error(ErrorCode::kInvalidArgument, "--workers " + text + ": a count from 0 to 64, or auto");
  }
  return std::optional<std::size_t>(n);
}

Result<WorkerCommandSettings> worker_command_settings(const GlobalOptions& g, const std::string& workers) {
  WorkerCommandSettings out;
  PF_ASSIGN_OR_RETURN(out.workers, parse_worker_count(workers));
  PF_ASSIGN_OR_RETURN(out.hsm, settings_from(g));
  PF_ASSIGN_OR_RETURN(out.audit_log, optional_audit_log(g));
  return out;
}

}  // namespace persoflow::pipeline
