// Which PKCS#11 module, token and PIN a command uses, resolved from (highest first)
// command-line flags, environment variables, the configuration file and defaults
// (docs/configuration.md). The PIN itself is never a flag: only where to read it.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config_file.h"
#include "engine/result.h"
#include "engine/secure_bytes.h"

namespace persoflow::config {

inline constexpr std::string_view kDefaultModule = "/usr/lib/softhsm/libsofthsm2.so";
inline constexpr std::string_view kDefaultPinEnv = "PERSOFLOW_PIN";
inline constexpr std::size_t kDefaultMaxSessions = 8;

struct PinSource {
  enum class Kind { kEnv, kFile };
  Kind kind = Kind::kEnv;
  std::string name;  // environment variable name or file path
  std::string origin;  // where this choice came from, for messages ("--pin-file", "conf:3", ...)
};

struct HsmSettings {
  std::string module;
  std::string token;
  PinSource pin;
  std::size_t max_sessions = kDefaultMaxSessions;
};

// Values given on the command line (absent when not given).
struct HsmFlags {
  std::optional<std::string> module;
  std::optional<std::string> token;
  std::optional<std::string> pin_env;
  std::optional<std::string> pin_file;
  std::optional<std::size_t> max_sessions;
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;

// The process environment.
std::optional<std::string> process_env(std::string_view name);

Result<HsmSettings> resolve_hsm_settings(const HsmFlags& flags, const ConfigFile* file,
                                         const EnvLookup& env = process_env);

// Reads the PIN. An environment variable must be set and non-empty; a PIN file must
// be a regular file that others cannot read (like ssh keys), one line, trailing
// newline ignored. Messages name the variable or file, never the PIN.
Result<SecureBytes> read_pin(const PinSource& source, const EnvLookup& env = process_env);

}  // namespace persoflow::config
