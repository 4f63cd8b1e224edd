#include "config/audit_settings.h"

namespace persoflow::config {

Result<std::optional<std::string>> resolve_audit_log(const std::optional<std::string>& flag,
                                                     const ConfigFile* file, const EnvLookup& env) {
  if (flag) {
    if (flag->empty()) return Error(ErrorCode::kInvalidArgument, "--audit-log needs a file name");
    return flag;
  }
  if (auto e = env(kAuditLogEnv); e && !e->empty()) return e;
  if (file == nullptr) return std::optional<std::string>();
  auto from_file = file->get("audit", "log");
  if (from_file && from_file->empty()) {
    return Error(ErrorCode::kParse, file->where("audit", "log") +
                                        ": log in [audit] is empty (give the audit log's path, "
                                        "or remove the key)");
  }
  return from_file;
}

}  // namespace persoflow::config
