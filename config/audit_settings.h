// Where the audit log lives (docs/audit.md), resolved like the HSM settings: the
// --audit-log flag, else $PERSOFLOW_AUDIT_LOG when set and not empty, else `log` in the
// [audit] section of the configuration file; none of them means no audit log.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/config_file.h"
#include "config/hsm_settings.h"
#include "engine/result.h"

namespace persoflow::config {

inline constexpr std::string_view kAuditLogEnv = "PERSOFLOW_AUDIT_LOG";

// The audit log's path, or nullopt when none is configured. An empty --audit-log is
// kInvalidArgument; an empty `log =` in the file is kParse naming the file and line.
Result<std::optional<std::string>> resolve_audit_log(const std::optional<std::string>& flag,
                                                     const ConfigFile* file,
                                                     const EnvLookup& env = process_env);

}  // namespace persoflow::config
