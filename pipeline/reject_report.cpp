#include "pipeline/reject_report.h"

#include <nlohmann/json.hpp>

namespace persoflow::pipeline {

std::string reject_json_line(const Reject& r) {
  nlohmann::ordered_json j;
  j["record"] = r.record;
  j["offset"] = r.offset;
  j["card_id"] = r.card_id.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.card_id);
  j["field"] = r.field.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.field);
  j["category"] = r.category;
  j["reason"] = r.reason;
  if (!r.shown_value.empty()) j["value"] = r.shown_value;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

Result<RejectReport> RejectReport::create(const std::string& path) {
  RejectReport report;
  if (!path.empty()) {
    PF_ASSIGN_OR_RETURN(auto file, formats::AtomicFile::create(path));
    report.file_.emplace(std::move(file));
  }
  return report;
}

Status RejectReport::add(const Reject& reject) {
  ++count_;
  if (reject.record != 0) ++record_count_;
  ++by_category_[reject.category];
  if (!file_) return ok_status();
  const std::string line = reject_json_line(reject);
  return file_->write(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
}

Status RejectReport::commit() {
  if (!file_) return ok_status();
  return file_->commit();
}

}  // namespace persoflow::pipeline
