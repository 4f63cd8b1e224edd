#include "pipeline/run_audit.h"

#include <filesystem>

namespace persoflow::pipeline {

RunAudit::RunAudit(const std::string& log_path, std::string command, std::string run_id)
    : command_(std::move(command)), run_id_(std::move(run_id)) {
  if (!log_path.empty()) log_.emplace(log_path);
}

Status RunAudit::append(std::string_view event, nlohmann::ordered_json details) {
  if (!log_) return ok_status();
  nlohmann::ordered_json d;
  d["command"] = command_;
  d["run_id"] = run_id_;
  for (auto& [k, v] : details.items()) d[k] = v;
  auto entry = log_->append(event, d);
  if (!entry) return with_context(entry.error(), "audit log " + log_->path() + ": " + std::string(event));
  return ok_status();
}

Status RunAudit::start(nlohmann::ordered_json details) {
  PF_TRY(append("run.start", std::move(details)));
  started_ = true;
  return ok_status();
}

Status RunAudit::resume(nlohmann::ordered_json details) {
  PF_TRY(append("run.resume", std::move(details)));
  started_ = true;
  return ok_status();
}

Status RunAudit::reserve(nlohmann::ordered_json details) { return append("counters.reserve", std::move(details)); }

Status RunAudit::finish(nlohmann::ordered_json details) {
  nlohmann::ordered_json d;
  d["status"] = "ok";
  for (auto& [k, v] : details.items()) d[k] = v;
  PF_TRY(append("run.end", std::move(d)));
  ended_ = true;
  return ok_status();
}

Error RunAudit::fail(Error error) {
  if (!log_ || !started_ || ended_) return error;
  ended_ = true;
  nlohmann::ordered_json d;
  d["status"] = "failed";
  d["error"] = error.message();
  if (auto s = append("run.end", std::move(d)); !s) {
    error.add_context("(and the audit log did not record the failure: " + s.error().message() + ")");
  }
  return error;
}

nlohmann::ordered_json audit_key(const std::string& uri, const Result<Bytes>& kcv) {
  return {{"uri", uri}, {"kcv", kcv ? nlohmann::ordered_json(to_hex(*kcv)) : nlohmann::ordered_json(nullptr)}};
}

nlohmann::ordered_json import_keys_audit(hsm::KeyStore& keys, const std::string& transport_key_uri,
                                         const formats::XofHeader& header, const std::vector<Bytes>& class_kcvs,
                                         const std::string& integrity_key_uri, const Bytes& integrity_kcv) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  auto tk = keys.find(transport_key_uri);
  out.push_back(audit_key(transport_key_uri, tk ? keys.kcv(*tk) : Result<Bytes>(tk.error())));
  for (std::size_t c = 0; c < header.classes.size() && c < class_kcvs.size(); ++c) {
    out.push_back(audit_key(header.classes[c].dkep_uri, Result<Bytes>(class_kcvs[c])));
  }
  out.push_back(audit_key(integrity_key_uri, Result<Bytes>(integrity_kcv)));
  return out;
}

}  // namespace persoflow::pipeline
